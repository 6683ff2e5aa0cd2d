"""Every Redis byte of the project: key templates, encodings, Lua scripts, locks, the retry and
transient-error policy, publish/flip/rollback, the update queue and writer, reader events and
trending, and the API's read side (:class:`service.redis.store.RedisStore`).

Nothing outside this package imports redis-py or runs a script: the Flask routes read through
the store interface (service/store/base.py), the CLI and the benchmarks call these modules.
Import the submodule you need; this package imports nothing heavy on its own.
"""
