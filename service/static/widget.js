/*! related-stories widget | "You may also like" and "Recommended for you" boxes | MIT */
(function (window, document) {
  "use strict";
  // Bump on every change: /widget.js?v=VERSION is served as immutable, and the ETag carries it.
  var VERSION = "2.1.0";
  var NS = "RelatedStories";
  // Loaded twice (two embeds on one page): the first copy owns the boxes.
  if (window[NS]) return;

  var HISTORY_KEY = "recs:history";
  var HISTORY_MAX = 50;
  var DEFAULT_K = 6;
  var MAX_K = 50;
  var DEFAULT_TIMEOUT = 1500;
  var ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;
  var TITLES = { related: "You may also like", foryou: "Recommended for you" };
  // Sources the events API takes; others (a pinned card) are reported as the box's kind.
  var EVENT_SOURCES = { history: 1, trending: 1, latest: 1 };
  var MAX_EXCLUDE = 100; // the API's limit
  var SPONSORED = "Sponsored";
  var seq = 0;
  // One page, no repeats: boxes load in page order, each excluding the page's article and
  // what the boxes before it show.
  var boxes = []; // every box's state, in page order
  var shown = []; // ids on screen so far, in the order the boxes showed them
  var viewSent = null; // the page view, recorded once per page load
  var warned = false; // the data-user-id notice, once per page load

  function noop() {}

  function debug(message, detail) {
    // console.debug only: a widget must never spam a host page's error console.
    try {
      window.console.debug("[recs] " + message, detail === undefined ? "" : detail);
    } catch (e) {
      /* no console */
    }
  }

  // --------------------------------------------------------------------- where the API is

  var script = document.currentScript;
  if (!script) {
    var scripts = document.getElementsByTagName("script");
    for (var i = scripts.length - 1; i >= 0 && !script; i--) {
      if (/\/widget(\.min)?\.js([?#]|$)/.test(scripts[i].src)) script = scripts[i];
    }
  }

  function attr(el, name) {
    var value = el && el.getAttribute(name);
    return value === null || value === undefined ? "" : value.trim();
  }

  function apiBase(box) {
    var given = attr(box, "data-api") || attr(script, "data-api");
    try {
      if (given) return new URL(given.replace(/\/*$/, "/"), location.href).href;
      // The API serves widget.js at its root: the script's own directory is the API base.
      return new URL(".", (script && script.src) || location.href).href;
    } catch (e) {
      return null;
    }
  }

  // --------------------------------------------------------------------- reading history

  function validId(value) {
    return typeof value === "string" && ID_RE.test(value);
  }

  function readHistory() {
    try {
      var list = JSON.parse(window.localStorage.getItem(HISTORY_KEY) || "[]");
      return Array.isArray(list) ? list.filter(validId).slice(0, HISTORY_MAX) : [];
    } catch (e) {
      return []; // storage disabled (privacy mode, sandboxed iframe) or corrupt
    }
  }

  function writeHistory(list) {
    try {
      window.localStorage.setItem(HISTORY_KEY, JSON.stringify(list.slice(0, HISTORY_MAX)));
    } catch (e) {
      /* quota or disabled storage: personalisation simply stays off */
    }
  }

  function remember(id) {
    var list = readHistory().filter(function (x) {
      return x !== id;
    });
    list.unshift(id);
    writeHistory(list);
  }

  function currentArticle() {
    var marked = document.querySelector("[data-current-article]");
    var id = attr(marked, "data-current-article");
    if (!id) id = attr(document.querySelector('[data-recs="related"][data-article-id]'), "data-article-id");
    return validId(id) ? id : "";
  }

  // Server-side history needs the reader's token, signed by the site's backend
  // ("<user_id>.<expires_unix>.<sig>"). It travels only in JSON bodies, never in a URL.
  function userToken(box) {
    return attr(box, "data-user-token") || attr(script, "data-user-token");
  }

  function warnUserId(box) {
    // data-user-id named a reader without proof: the API no longer accepts it. Said once, as
    // a warning (not an error), so a site still using it learns why the box is anonymous.
    if (warned || userToken(box)) return;
    if (!attr(box, "data-user-id") && !attr(script, "data-user-id")) return;
    warned = true;
    try {
      window.console.warn(
        "[recs] data-user-id is ignored: it was replaced by data-user-token (signed by the " +
          "site's backend); this page uses the browser's own reading history"
      );
    } catch (e) {
      /* no console */
    }
  }

  // --------------------------------------------------------------------- network

  function getJSON(url, options, timeout) {
    return new Promise(function (resolve, reject) {
      var controller = window.AbortController ? new AbortController() : null;
      var timer = setTimeout(function () {
        if (controller) controller.abort();
        reject(new Error("timeout after " + timeout + " ms"));
      }, timeout);
      var init = { credentials: "omit", signal: controller ? controller.signal : undefined };
      for (var key in options) init[key] = options[key];
      window
        .fetch(url, init)
        .then(function (response) {
          if (!response.ok) {
            var error = new Error("HTTP " + response.status);
            error.status = response.status;
            throw error;
          }
          return response.json();
        })
        .then(
          function (body) {
            clearTimeout(timer);
            resolve(body);
          },
          function (error) {
            clearTimeout(timer);
            reject(error);
          }
        );
    });
  }

  function postEvent(base, payload) {
    var url = base + "v1/events";
    var body = JSON.stringify(payload);
    // sendBeacon survives the navigation a click starts. Same origin only: a cross-origin
    // beacon is credentialed, so its JSON preflight would need Allow-Credentials; fetch with
    // keepalive and no credentials needs just ordinary CORS for POST + Content-Type.
    try {
      if (new URL(url).origin === location.origin && navigator.sendBeacon) {
        if (navigator.sendBeacon(url, new Blob([body], { type: "application/json" }))) return;
      }
    } catch (e) {
      /* fall through to fetch */
    }
    try {
      window
        .fetch(url, {
          method: "POST",
          body: body,
          headers: { "Content-Type": "application/json" },
          credentials: "omit",
          keepalive: true,
        })
        .catch(noop);
    } catch (e) {
      /* events are best effort */
    }
  }

  // Server-side history (data-user-token opt-in): the view must reach the API before the
  // recommendation request; a failure (503 without Redis, a refused token) or a slow answer
  // just moves on.
  function sendView(base, token, article, timeout) {
    var payload = { user_token: token, article_id: article, type: "view" };
    return getJSON(
      base + "v1/events",
      {
        method: "POST",
        body: JSON.stringify(payload),
        headers: { "Content-Type": "application/json" },
        keepalive: true,
      },
      timeout
    ).catch(noop);
  }

  // --------------------------------------------------------------------- rendering

  var CSS =
    ".recs{--_a:var(--recs-accent,#c8102e);--_f:var(--recs-font,inherit);--_m:var(--recs-muted,#5f6368);" +
    "--_b:var(--recs-card-bg,#fff);--_bd:var(--recs-border,#e2e2e2);--_r:var(--recs-radius,.5rem);" +
    "--_h:var(--recs-card-height,7rem);--_g:var(--recs-gap,.875rem);--_hh:var(--recs-heading-height,3rem);" +
    "container:recs/inline-size;display:block;font-family:var(--_f);color:var(--recs-text,inherit)}" +
    ".recs__frame{--_rows:var(--_r1);min-height:calc(var(--_hh) + var(--_rows)*var(--_h) + (var(--_rows) - 1)*var(--_g))}" +
    ".recs__heading{box-sizing:border-box;height:var(--_hh);margin:0;padding:.6rem 0 0;border-top:3px solid var(--_a);" +
    "font:700 var(--recs-heading-size,1.125rem)/1.5 var(--_f);color:var(--recs-heading-color,inherit);" +
    "overflow:hidden;white-space:nowrap;text-overflow:ellipsis}" +
    ".recs__list{list-style:none;margin:0;padding:0;display:grid;grid-template-columns:minmax(0,1fr);" +
    "grid-auto-rows:var(--_h);gap:var(--_g)}" +
    ".recs__item{margin:0;padding:0;min-width:0}" +
    ".recs__link{box-sizing:border-box;display:flex;gap:.75rem;height:100%;padding:.75rem .875rem;overflow:hidden;" +
    "background:var(--_b);border:1px solid var(--_bd);border-radius:var(--_r);color:inherit;text-decoration:none;" +
    "transition:border-color .15s,box-shadow .15s}" +
    ".recs__link:hover{border-color:var(--_a);box-shadow:0 2px 10px rgba(0,0,0,.08)}" +
    ".recs__link:hover .recs__title{color:var(--_a)}" +
    ".recs__link:focus-visible{outline:3px solid var(--recs-focus,var(--_a));outline-offset:2px}" +
    ".recs__img{flex:none;width:30%;max-width:7rem;height:100%;object-fit:cover;border-radius:calc(var(--_r)/2);background:#eee}" +
    ".recs__body{display:flex;flex-direction:column;gap:.3rem;min-width:0;flex:1}" +
    ".recs__title{font-weight:650;font-size:.95rem;line-height:1.35;overflow:hidden;display:-webkit-box;" +
    "-webkit-box-orient:vertical;-webkit-line-clamp:2;overflow-wrap:anywhere}" +
    ".recs__kicker{order:-1;font-size:.7rem;font-weight:700;letter-spacing:.06em;text-transform:uppercase;" +
    "color:var(--_a);white-space:nowrap;overflow:hidden;text-overflow:ellipsis}" +
    ".recs__time{margin-top:auto;font-size:.78rem;color:var(--_m)}" +
    "@container recs (min-width:34rem){.recs__frame{--_rows:var(--_r2)}" +
    ".recs__list{grid-template-columns:repeat(2,minmax(0,1fr))}}" +
    "@container recs (min-width:52rem){.recs__frame{--_rows:var(--_r3)}" +
    ".recs__list{grid-template-columns:repeat(3,minmax(0,1fr))}}" +
    ".recs__link--sponsored{background:var(--recs-sponsored-bg,#fbf7ec)}" +
    ".recs__link--sponsored .recs__kicker{color:var(--_m)}" +
    ".recs--hidden{visibility:hidden}.recs--gone{display:none}";

  function addStyles() {
    if (document.getElementById("recs-widget-css")) return;
    var style = document.createElement("style");
    style.id = "recs-widget-css";
    style.textContent = CSS;
    (document.head || document.documentElement).appendChild(style);
  }

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text) node.textContent = text;
    return node;
  }

  function safeUrl(value) {
    if (typeof value !== "string" || !value) return "";
    try {
      var url = new URL(value, location.href);
      // Only web links: a javascript: URL in the data must never become a live link.
      return url.protocol === "https:" || url.protocol === "http:" ? url.href : "";
    } catch (e) {
      return "";
    }
  }

  function linkFor(item, box, base) {
    var url = safeUrl(item.url);
    if (url) return url;
    // Articles without a URL (the Reuters sample) link through a template, by default the
    // API's own demo page.
    var template = attr(box, "data-link-template") || "{api}demo/articles/{id}";
    return safeUrl(
      template.replace("{api}", base).replace("{id}", encodeURIComponent(item.id))
    );
  }

  function formatWhen(iso) {
    var time = Date.parse(iso);
    if (!iso || isNaN(time)) return "";
    var lang = document.documentElement.lang || undefined;
    var seconds = (Date.now() - time) / 1000;
    try {
      // Relative for the news cycle ("3 hours ago"); older stories read better as a date.
      if (seconds >= 0 && seconds < 30 * 86400 && window.Intl && Intl.RelativeTimeFormat) {
        var rtf = new Intl.RelativeTimeFormat(lang, { numeric: "auto" });
        if (seconds < 3600) return rtf.format(-Math.max(1, Math.round(seconds / 60)), "minute");
        if (seconds < 86400) return rtf.format(-Math.round(seconds / 3600), "hour");
        return rtf.format(-Math.round(seconds / 86400), "day");
      }
      return new Date(time).toLocaleDateString(lang, {
        day: "numeric",
        month: "short",
        year: "numeric",
      });
    } catch (e) {
      return "";
    }
  }

  function usable(items, skip) {
    var out = [];
    var seen = {};
    if (!Array.isArray(items)) return out;
    for (var n = 0; n < items.length; n++) {
      var item = items[n];
      if (!item || !validId(item.id) || typeof item.title !== "string" || !item.title) continue;
      if (item.id === skip || seen[item.id]) continue;
      seen[item.id] = true;
      out.push(item);
    }
    return out;
  }

  function render(box, state, items) {
    var level = parseInt(attr(box, "data-heading-level"), 10);
    level = level >= 2 && level <= 6 ? level : 2;
    var headingId = "recs-h-" + ++seq;
    var heading = el("h" + level, "recs__heading", attr(box, "data-title") || TITLES[state.kind]);
    heading.id = headingId;
    var list = el("ul", "recs__list");
    list.setAttribute("aria-labelledby", headingId);
    items.forEach(function (item, index) {
      var li = el("li", "recs__item");
      var link = el("a", "recs__link");
      link.href = linkFor(item, box, state.base);
      link.setAttribute("data-recs-id", item.id);
      link.setAttribute("data-recs-position", String(index)); // slot 0 is the first card
      // Sources the events API knows: the item's own, "related", or "other".
      var source = EVENT_SOURCES[item.source] ? item.source : state.kind === "related" ? "related" : "other";
      link.setAttribute("data-recs-source", source);
      if (item.source === "pinned") link.setAttribute("data-recs-pinned", "");
      if (item.sponsored === true) {
        link.setAttribute("data-recs-sponsored", "");
        link.classList.add("recs__link--sponsored");
      }
      var image = safeUrl(item.image_url);
      if (image) {
        var img = el("img", "recs__img");
        // Decorative: the title next to it names the link; alt text would be read twice.
        img.alt = "";
        img.loading = "lazy";
        img.decoding = "async";
        img.onerror = function () {
          img.style.display = "none";
        };
        img.src = image;
        link.appendChild(img);
      }
      var body = el("span", "recs__body");
      body.appendChild(el("span", "recs__title", item.title));
      // Kicker: the section, else the most specific tag shared with the reader's article.
      var tags = Array.isArray(item.shared_tags) ? item.shared_tags : [];
      var kicker = item.section || (typeof tags[0] === "string" ? tags[0] : "");
      // A sponsored card says so where the kicker goes, in words (not only a colour).
      if (item.sponsored === true) kicker = attr(box, "data-sponsored-label") || SPONSORED;
      if (kicker) body.appendChild(el("span", "recs__kicker", kicker));
      var when = formatWhen(item.published_at);
      if (when) {
        var time = el("time", "recs__time", when);
        time.dateTime = item.published_at;
        body.appendChild(time);
      }
      link.appendChild(body);
      li.appendChild(link);
      list.appendChild(li);
    });
    state.frame.textContent = "";
    state.frame.appendChild(heading);
    state.frame.appendChild(list);
    box.setAttribute("data-recs-state", "ready");
    box.removeAttribute("aria-busy");
  }

  function hide(box, why) {
    try {
      debug("hiding " + box.getAttribute("data-recs") + " box: " + why);
      box.removeAttribute("aria-busy");
      box.setAttribute("data-recs-state", "hidden");
      var top = box.getBoundingClientRect().top;
      // Collapsing a box still below the viewport moves nothing the reader sees; one in or
      // above the viewport keeps its reserved space (invisible) so the page does not jump.
      box.classList.add(top >= window.innerHeight ? "recs--gone" : "recs--hidden");
    } catch (e) {
      /* the box left the page meanwhile */
    }
  }

  // --------------------------------------------------------------------- one box

  function excluded(current) {
    var out = current ? [current] : [];
    for (var n = 0; n < shown.length && out.length < MAX_EXCLUDE; n++) {
      if (out.indexOf(shown[n]) < 0) out.push(shown[n]);
    }
    return out;
  }

  function excludeQuery(ids) {
    return ids.length ? "&exclude=" + ids.map(encodeURIComponent).join(",") : "";
  }

  function load(box, state) {
    var k = state.k;
    var current = currentArticle();
    var request;
    if (state.kind === "related") {
      var id = attr(box, "data-article-id");
      if (!validId(id)) return Promise.reject(new Error("missing or invalid data-article-id"));
      // The box's own article is left out by the API itself; the page's, if another, not.
      var skip = excluded(current && current !== id ? current : "");
      current = id;
      request = getJSON(
        state.base + "v1/articles/" + encodeURIComponent(id) + "/related?k=" + k + excludeQuery(skip),
        {},
        state.timeout
      );
    } else if (state.token) {
      request = (viewSent || Promise.resolve())
        .then(function () {
          // No history field: given, it would replace the reader's stored history.
          var payload = { user_token: state.token, k: k, exclude: excluded(current) };
          return getJSON(
            state.base + "v1/recommendations",
            {
              method: "POST",
              body: JSON.stringify(payload),
              headers: { "Content-Type": "application/json" },
            },
            state.timeout
          );
        })
        .catch(function (error) {
          // A token the API refuses (expired in a long-open tab, malformed): the box still
          // shows what the API recommends without a history.
          var status = error && error.status;
          if (status !== 400 && status !== 401 && status !== 403) throw error;
          debug("token refused (HTTP " + status + "), recommending without a history");
          var query = "?k=" + k + excludeQuery(excluded(current));
          return getJSON(state.base + "v1/recommendations" + query, {}, state.timeout);
        });
    } else {
      var history = readHistory();
      var query = "?k=" + k + excludeQuery(excluded(current));
      if (history.length) query += "&history=" + history.map(encodeURIComponent).join(",");
      // A GET with a query string: a "simple" request, no CORS preflight cross-origin.
      request = getJSON(state.base + "v1/recommendations" + query, {}, state.timeout);
    }
    return request.then(function (body) {
      // The exclude the API honours, checked here too: a cached answer may predate it.
      var items = usable(body && body.items, current)
        .filter(function (item) {
          return shown.indexOf(item.id) < 0;
        })
        .slice(0, k);
      if (!items.length) throw new Error(body && body.reason ? "box off (" + body.reason + ")" : "no items");
      render(box, state, items);
      items.forEach(function (item) {
        shown.push(item.id);
      });
    });
  }

  function onClick(box, state, event) {
    try {
      if (event.type === "auxclick" && event.button !== 1) return; // middle click opens a tab
      var link = event.target && event.target.closest && event.target.closest("a.recs__link");
      if (!link || !box.contains(link)) return;
      var payload = {
        article_id: link.getAttribute("data-recs-id"),
        type: "click",
        position: parseInt(link.getAttribute("data-recs-position"), 10),
        source: link.getAttribute("data-recs-source"),
      };
      if (state.token) payload.user_token = state.token;
      postEvent(state.base, payload);
    } catch (e) {
      debug("click not reported", e);
    }
  }

  function setup(box) {
    if (box.hasAttribute("data-recs-state")) return; // already set up (scan() called again)
    var kind = attr(box, "data-recs");
    var k = parseInt(attr(box, "data-k"), 10);
    k = k >= 1 ? Math.min(k, MAX_K) : DEFAULT_K;
    var timeout = parseInt(attr(box, "data-timeout"), 10);
    var state = {
      kind: kind,
      k: k,
      base: apiBase(box),
      timeout: timeout > 0 ? timeout : DEFAULT_TIMEOUT,
      token: userToken(box), // foryou: server-side history; both: the reader of click events
      frame: el("div", "recs__frame"),
    };
    box.classList.add("recs");
    box.setAttribute("data-recs-state", "waiting");
    // Space for k cards is reserved now, before any data: rows per column count, used by
    // the CSS container queries, so the box never grows when the cards arrive.
    box.style.setProperty("--_r1", String(k));
    box.style.setProperty("--_r2", String(Math.ceil(k / 2)));
    box.style.setProperty("--_r3", String(Math.ceil(k / 3)));
    box.textContent = "";
    box.appendChild(state.frame);
    if (!TITLES[kind] || !state.base || !window.fetch) {
      hide(box, "unsupported box or browser");
      return;
    }
    box.addEventListener("click", function (event) {
      onClick(box, state, event);
    });
    box.addEventListener("auxclick", function (event) {
      onClick(box, state, event);
    });

    var index = boxes.length;
    boxes.push(state);
    state.done = null;
    function start() {
      if (state.done) return state.done;
      // Page order: the boxes above load first (now, if the reader got here before them), so
      // this one knows what they show.
      var before = index > 0 ? boxes[index - 1].start() : Promise.resolve();
      box.setAttribute("aria-busy", "true");
      box.setAttribute("data-recs-state", "loading");
      // Through a promise: even a synchronous throw in load() ends in hide(), not the page.
      state.done = before
        .then(function () {
          return load(box, state);
        })
        .catch(function (error) {
          hide(box, (error && error.message) || "error");
        });
      return state.done;
    }
    state.start = start;
    if (!window.IntersectionObserver) {
      start();
      return;
    }
    // Lazy: ask the API only when the reader gets near the box.
    var observer = new IntersectionObserver(
      function (entries) {
        for (var n = 0; n < entries.length; n++) {
          if (entries[n].isIntersecting) {
            observer.disconnect();
            start();
            return;
          }
        }
      },
      { rootMargin: attr(box, "data-root-margin") || "400px 0px" }
    );
    observer.observe(box);
  }

  function recordView() {
    if (viewSent) return;
    var current = currentArticle();
    var opted = attr(script, "data-user-token")
      ? script
      : document.querySelector("[data-recs][data-user-token]");
    var token = userToken(opted);
    if (!current) {
      viewSent = Promise.resolve();
    } else if (token) {
      var base = apiBase(opted);
      viewSent = base ? sendView(base, token, current, DEFAULT_TIMEOUT) : Promise.resolve();
    } else {
      // Personalisation without server-side tracking: the history never leaves the browser
      // except as the query of the reader's own recommendation request.
      remember(current);
      viewSent = Promise.resolve();
    }
  }

  function scan() {
    try {
      var boxes = document.querySelectorAll("[data-recs]");
      if (!boxes.length) return;
      addStyles();
      recordView();
      for (var n = 0; n < boxes.length; n++) {
        try {
          warnUserId(boxes[n]);
          setup(boxes[n]);
        } catch (e) {
          debug("box failed", e);
        }
      }
    } catch (e) {
      debug("widget failed", e);
    }
  }

  window[NS] = {
    version: VERSION,
    scan: scan, // call after adding boxes to the page (single-page apps)
    history: readHistory,
    clearHistory: function () {
      writeHistory([]);
    },
  };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", scan);
  } else {
    scan();
  }
})(window, document);
