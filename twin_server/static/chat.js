/* The twin's chat page. Plain JavaScript, no dependencies, no build step.
 *
 * Talks to the API next to it: GET profile, POST chat/stream (server-sent
 * events read from fetch(), since EventSource cannot POST), GET and DELETE
 * conversation/<id>. Untrusted text (replies, persona text, problem details)
 * only ever reaches the page through textContent and DOM nodes built here;
 * nothing is parsed as HTML.
 */
(function () {
  "use strict";

  var SESSION_KEY = "twin-server:session";
  var IDLE_TIMEOUT_MS = 90000; // no byte, not even a keep-alive, for this long: the stream is dead
  var MAX_INPUT_HEIGHT = 168;

  function $(id) { return document.getElementById(id); }

  var ui = {
    app: $("app"),
    avatar: $("twin-avatar"),
    name: $("twin-name"),
    intro: $("twin-intro"),
    newButton: $("new-conversation"),
    deleteButton: $("delete-conversation"),
    conversation: $("conversation"),
    welcome: $("welcome"),
    welcomeAvatar: $("welcome-avatar"),
    welcomeTitle: $("welcome-title"),
    welcomeText: $("welcome-text"),
    messages: $("messages"),
    notice: $("notice"),
    noticeText: $("notice-text"),
    noticeClose: $("notice-close"),
    form: $("composer"),
    input: $("message"),
    send: $("send"),
    announcer: $("announcer"),
    status: $("status"),
    dialog: $("confirm-delete"),
    disclaimer: $("disclaimer")
  };

  var state = {
    name: "",
    firstName: "",
    sessionId: null,
    busy: false,
    controller: null,
    generation: 0 // bumped by "new conversation" and "delete", so a stale reply cannot land
  };

  /* ---------- small helpers ---------- */

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  var store = (function () {
    var memory = {};
    function safe(fn, fallback) { try { return fn(); } catch (e) { return fallback(); } }
    return {
      get: function (key) {
        return safe(function () { return window.localStorage.getItem(key); },
                    function () { return memory[key] || null; });
      },
      set: function (key, value) {
        safe(function () { window.localStorage.setItem(key, value); }, function () { memory[key] = value; });
      },
      remove: function (key) {
        safe(function () { window.localStorage.removeItem(key); }, function () { delete memory[key]; });
      }
    };
  })();

  function rememberSession(id) {
    if (typeof id !== "string" || !/^[A-Za-z0-9_-]{8,128}$/.test(id)) return;
    state.sessionId = id;
    store.set(SESSION_KEY, id);
    ui.deleteButton.disabled = false;
  }

  function forgetSession() {
    state.sessionId = null;
    store.remove(SESSION_KEY);
    ui.deleteButton.disabled = true;
  }

  function initials(name) {
    var words = name.trim().split(/\s+/).filter(Boolean);
    if (!words.length) return "";
    var first = Array.from(words[0])[0] || "";
    var last = words.length > 1 ? Array.from(words[words.length - 1])[0] || "" : "";
    return (first + last).toUpperCase();
  }

  function who() { return state.name || "The twin"; }

  function announce(text) {
    // Cleared first so the same sentence twice is still read out.
    ui.announcer.textContent = "";
    window.setTimeout(function () { ui.announcer.textContent = text; }, 30);
  }

  function setStatus(text) { ui.status.textContent = text; }

  /* ---------- problems: what went wrong, in one friendly sentence ---------- */

  function TwinProblem(problem) {
    this.name = "TwinProblem";
    this.problem = problem;
    this.message = "problem " + problem.status;
  }
  TwinProblem.prototype = Object.create(Error.prototype);

  function parseRetryAfter(value) {
    if (!value) return null;
    if (/^\d+$/.test(value.trim())) return parseInt(value, 10);
    var when = Date.parse(value);
    return isNaN(when) ? null : Math.max(1, Math.ceil((when - Date.now()) / 1000));
  }

  function problemFrom(doc, status, headers) {
    doc = doc && typeof doc === "object" ? doc : {};
    var retry = Number(doc.retry_after);
    if (!(retry > 0) && headers) retry = parseRetryAfter(headers.get("Retry-After"));
    return {
      status: Number(doc.status) || status || 0,
      detail: typeof doc.detail === "string" ? doc.detail : "",
      errors: doc.errors,
      retryAfter: retry > 0 ? Math.ceil(retry) : null,
      requestId: typeof doc.request_id === "string" ? doc.request_id
        : (headers && headers.get("X-Request-ID")) || ""
    };
  }

  function readProblem(response) {
    var type = response.headers.get("Content-Type") || "";
    var body = /json/i.test(type) ? response.json().catch(function () { return null; }) : Promise.resolve(null);
    return body.then(function (doc) { return new TwinProblem(problemFrom(doc, response.status, response.headers)); });
  }

  function firstError(errors) {
    // marshmallow's messages: {"message": ["Message must not be empty."]}, possibly nested.
    if (typeof errors === "string") return errors;
    if (Array.isArray(errors)) {
      for (var i = 0; i < errors.length; i++) { var found = firstError(errors[i]); if (found) return found; }
    } else if (errors && typeof errors === "object") {
      for (var key in errors) { var inner = firstError(errors[key]); if (inner) return inner; }
    }
    return "";
  }

  function shortText(text) {
    text = (text || "").trim();
    return text && text.length <= 240 ? text : "";
  }

  /* One sentence for a problem; ``action`` says what the visitor was doing. */
  function friendly(problem, action) {
    var status = problem.status;
    var wait = problem.retryAfter;
    var again = wait ? " Try again in " + wait + " s." : " Please try again in a moment.";
    if (status === 0) {
      return "Can't reach " + who() + " right now. Check your connection and try again.";
    }
    if (action === "load") return "Your earlier messages could not be loaded right now." + again;
    if (action === "delete") {
      return status === 429 || status >= 500
        ? "Your conversation could not be deleted right now." + again
        : ("Your conversation could not be deleted. " + shortText(problem.detail)).trim();
    }
    if (action === "profile") return "The twin's profile could not be loaded. You can still send a message.";
    if (status === 429) return "You're sending messages a little fast." + again;
    if (status === 503) {
      return wait ? who() + " is busy right now. Try again in " + wait + " s."
        : who() + " is unavailable right now. Please try again in a moment.";
    }
    if (status === 504) return who() + " took too long to answer. Please try again.";
    if (status === 413) return "That message is too long to send. Please shorten it.";
    if (status >= 400 && status < 500) {
      return shortText(firstError(problem.errors)) || shortText(problem.detail) || "That message could not be sent.";
    }
    return "Something went wrong on our side, so " + who() + " could not answer. Please try again.";
  }

  /* ---------- the notice line ---------- */

  function showNotice(text, kind, reference) {
    ui.noticeText.replaceChildren(document.createTextNode(text));
    if (reference) {
      ui.noticeText.append(" ", el("span", "reference", "Reference " + reference.slice(0, 12)));
    }
    ui.notice.className = "notice " + (kind || "error");
    ui.notice.hidden = false;
  }

  function hideNotice() {
    ui.notice.hidden = true;
    ui.noticeText.textContent = "";
  }

  function showProblem(error, action) {
    var problem = error instanceof TwinProblem ? error.problem : { status: 0 };
    // A reference helps the owner find the log line of a real failure, not of a busy or slow backend.
    var reference = problem.status >= 500 && problem.status !== 503 && problem.status !== 504 ? problem.requestId : "";
    showNotice(friendly(problem, action), "error", reference);
  }

  /* ---------- safe rich text: paragraphs, lists, **bold**, `code`, links ---------- */

  var INLINE = /(`[^`\n]+`)|(\*\*[^*\n]+\*\*)|(https?:\/\/[^\s<>"'`]*[^\s<>"'`.,;:!?)\]])|([A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,})/g;
  var LIST_ITEM = /^\s*(?:[-*\u2022]|\d{1,3}[.)])\s+/;

  function link(href, text) {
    var url;
    try { url = new URL(href); } catch (e) { return document.createTextNode(text); }
    if (["http:", "https:", "mailto:"].indexOf(url.protocol) === -1) return document.createTextNode(text);
    var a = el("a", "", text);
    a.href = url.href;
    if (url.protocol !== "mailto:") {
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
    }
    return a;
  }

  function appendInline(parent, text) {
    var last = 0;
    var match;
    INLINE.lastIndex = 0;
    while ((match = INLINE.exec(text)) !== null) {
      if (match.index > last) parent.append(text.slice(last, match.index));
      if (match[1]) parent.append(el("code", "", match[1].slice(1, -1)));
      else if (match[2]) parent.append(el("strong", "", match[2].slice(2, -2)));
      else if (match[3]) parent.append(link(match[3], match[3]));
      else parent.append(link("mailto:" + match[4], match[4]));
      last = INLINE.lastIndex;
    }
    if (last < text.length) parent.append(text.slice(last));
  }

  function renderRich(container, text) {
    var nodes = [];
    text.replace(/\r\n?/g, "\n").split(/\n[ \t]*\n+/).forEach(function (block) {
      var lines = block.split("\n").filter(function (line, i, all) { return line.trim() || i < all.length - 1; });
      if (!lines.length) return;
      if (lines.every(function (line) { return LIST_ITEM.test(line); })) {
        var list = el(/^\s*\d/.test(lines[0]) ? "ol" : "ul");
        lines.forEach(function (line) {
          var item = el("li");
          appendInline(item, line.replace(LIST_ITEM, ""));
          list.append(item);
        });
        nodes.push(list);
        return;
      }
      var p = el("p");
      lines.forEach(function (line, i) {
        if (i) p.append(el("br"));
        appendInline(p, line);
      });
      nodes.push(p);
    });
    container.replaceChildren.apply(container, nodes);
  }

  /* ---------- the conversation view ---------- */

  function nearBottom() {
    var c = ui.conversation;
    return c.scrollHeight - c.scrollTop - c.clientHeight < 80;
  }

  function scrollToBottom() { ui.conversation.scrollTop = ui.conversation.scrollHeight; }

  function updateWelcome() {
    ui.welcome.hidden = ui.messages.children.length > 0;
  }

  function addMessage(role, text, options) {
    options = options || {};
    var stick = nearBottom();
    var item = el("li", "message " + (role === "user" ? "from-user" : "from-twin"));
    var speaker = el("span", "visually-hidden", role === "user" ? "You said:" : who() + " said:");
    var bubble = el("div", "bubble");
    var body = el("div", "text");
    item.append(speaker);
    if (role !== "user") {
      var avatar = el("div", "avatar avatar-small", initials(state.name));
      avatar.setAttribute("aria-hidden", "true");
      item.append(avatar);
    }
    bubble.append(body);
    item.append(bubble);

    var view = {
      item: item,
      set: function (value) {
        if (role === "user") body.textContent = value;
        else renderRich(body, value);
      },
      typing: function () {
        item.classList.add("pending");
        item.setAttribute("aria-busy", "true");
        var dots = el("span", "typing");
        dots.append(el("span"), el("span"), el("span"));
        var label = el("span", "visually-hidden", who() + " is typing");
        dots.append(label);
        body.replaceChildren(dots);
      },
      stream: function (value) {
        var stickNow = nearBottom();
        item.classList.remove("pending");
        item.classList.add("streaming");
        view.set(value);
        if (stickNow) scrollToBottom();
      },
      finish: function (value, complete, sources) {
        // Measured before the reply grows: a visitor reading further up is left where they are.
        var stickNow = nearBottom();
        item.classList.remove("pending", "streaming");
        item.removeAttribute("aria-busy");
        view.set(value);
        if (complete === false && !item.classList.contains("interrupted")) {
          item.classList.add("interrupted");
          bubble.append(el("p", "cut", "Reply interrupted"));
        }
        view.sources(sources);
        if (stickNow) scrollToBottom();
      },
      /* The passages the reply is based on, as small numbered footnotes under it. */
      sources: function (list) {
        var old = bubble.querySelector(".sources");
        if (old) old.remove();
        var valid = Array.isArray(list) ? list.filter(function (s) {
          return s && typeof s.title === "string" && s.title && typeof s.id === "string";
        }) : [];
        if (!valid.length) return;
        var notes = el("footer", "sources");
        notes.append(el("span", "sources-label", "Based on"));
        var ol = el("ol");
        valid.forEach(function (source) {
          var li = el("li", "", source.title);
          li.title = source.id;
          ol.append(li);
        });
        notes.append(ol);
        bubble.append(notes);
      },
      remove: function () { item.remove(); updateWelcome(); }
    };
    if (options.pending) view.typing(); else view.finish(text, options.complete, options.sources);
    ui.messages.append(item);
    updateWelcome();
    if (stick || options.scroll) scrollToBottom();
    return view;
  }

  function clearConversation() {
    ui.messages.replaceChildren();
    updateWelcome();
  }

  /* ---------- server-sent events from a fetch() body ---------- */

  function readEvents(response, onEvent, onActivity) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    var eventName = "";
    var data = [];

    function line(text) {
      if (text === "") {
        if (data.length) onEvent(eventName || "message", data.join("\n"));
        eventName = "";
        data = [];
        return;
      }
      if (text.charAt(0) === ":") return; // a comment: ": keep-alive"
      var colon = text.indexOf(":");
      var field = colon === -1 ? text : text.slice(0, colon);
      var value = colon === -1 ? "" : text.slice(colon + 1);
      if (value.charAt(0) === " ") value = value.slice(1);
      if (field === "event") eventName = value;
      else if (field === "data") data.push(value);
    }

    function pump() {
      return reader.read().then(function (chunk) {
        onActivity();
        buffer += chunk.done ? decoder.decode() : decoder.decode(chunk.value, { stream: true });
        var start = 0;
        for (var i = 0; i < buffer.length; i++) {
          var ch = buffer.charAt(i);
          if (ch !== "\n" && ch !== "\r") continue;
          if (ch === "\r" && i === buffer.length - 1 && !chunk.done) break; // may be half of "\r\n"
          line(buffer.slice(start, i));
          if (ch === "\r" && buffer.charAt(i + 1) === "\n") i++;
          start = i + 1;
        }
        buffer = buffer.slice(start);
        if (chunk.done) return undefined;
        return pump();
      });
    }
    return pump();
  }

  function isEventStream(response) {
    return /^text\/event-stream/i.test(response.headers.get("Content-Type") || "");
  }

  /* ---------- sending a message ---------- */

  function setBusy(busy) {
    state.busy = busy;
    ui.app.classList.toggle("busy", busy);
    ui.send.setAttribute("aria-disabled", busy ? "true" : "false");
  }

  function autosize() {
    ui.input.style.height = "auto";
    ui.input.style.height = Math.min(ui.input.scrollHeight + 2, MAX_INPUT_HEIGHT) + "px";
  }

  function send(text) {
    if (state.busy || !text.trim()) return;
    hideNotice();
    setBusy(true);
    ui.input.value = "";
    autosize();
    var generation = state.generation;
    var controller = new AbortController();
    state.controller = controller;
    var question = addMessage("user", text, { scroll: true });
    var reply = addMessage("assistant", "", { pending: true, scroll: true });
    setStatus(who() + " is typing…");

    var received = "";
    var finished = false;
    var pendingFrame = 0;
    var idle = 0;
    function resetIdle() {
      window.clearTimeout(idle);
      idle = window.setTimeout(function () { controller.abort(); }, IDLE_TIMEOUT_MS);
    }
    function paint() {
      if (pendingFrame) return;
      pendingFrame = window.requestAnimationFrame(function () {
        pendingFrame = 0;
        if (!finished) reply.stream(received);
      });
    }
    function onEvent(name, data) {
      var payload;
      try { payload = JSON.parse(data); } catch (e) { return; }
      if (!payload || typeof payload !== "object") return;
      if (name === "session") {
        rememberSession(payload.session_id);
      } else if (name === "delta") {
        if (typeof payload.text === "string" && payload.text) {
          received += payload.text;
          paint();
        }
      } else if (name === "done") {
        if (typeof payload.response === "string") received = payload.response;
        finished = true;
        reply.finish(received, true, payload.sources);
        if (payload.history_saved === false) {
          showNotice("This reply could not be saved, so it may be missing when you come back.", "info");
        }
      } else if (name === "error") {
        throw new TwinProblem(problemFrom(payload, 0, null));
      }
    }

    var body = { message: text };
    if (state.sessionId) body.session_id = state.sessionId;
    resetIdle();
    fetch("chat/stream", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream" },
      body: JSON.stringify(body),
      signal: controller.signal
    }).then(function (response) {
      if (!response.ok || !isEventStream(response)) return readProblem(response).then(function (p) { throw p; });
      return readEvents(response, onEvent, resetIdle);
    }).then(function () {
      if (!finished) throw new TwinProblem({ status: 502, detail: "", retryAfter: null, requestId: "" });
      announce(who() + " said: " + received);
    }).catch(function (error) {
      controller.abort(); // close the stream if it is still open
      if (generation !== state.generation) return; // the conversation was replaced meanwhile
      if (received) {
        reply.finish(received, false);
      } else {
        reply.remove();
        question.remove();
      }
      if (!ui.input.value.trim()) {
        ui.input.value = text;
        autosize();
      }
      showProblem(error, "send");
    }).then(function () {
      window.clearTimeout(idle);
      if (state.controller === controller) state.controller = null;
      if (generation === state.generation) {
        setBusy(false);
        setStatus("");
      }
    });
  }

  /* ---------- loading, starting over, deleting ---------- */

  function restore() {
    var id = store.get(SESSION_KEY);
    if (!id || !/^[A-Za-z0-9_-]{8,128}$/.test(id)) {
      updateWelcome();
      return;
    }
    rememberSession(id);
    ui.messages.setAttribute("aria-busy", "true");
    var generation = state.generation;
    fetch("conversation/" + encodeURIComponent(id), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) return readProblem(response).then(function (p) { throw p; });
        return response.json();
      })
      .then(function (doc) {
        if (generation !== state.generation) return;
        var messages = doc && Array.isArray(doc.messages) ? doc.messages : [];
        var items = [];
        messages.forEach(function (m) {
          if (!m || typeof m.content !== "string") return;
          // A reply still under way when the page was left ("in_progress") shows as far as it came.
          items.push(addMessage(m.role === "user" ? "user" : "assistant", m.content,
                                { complete: m.complete !== false, sources: m.sources }).item);
        });
        ui.messages.prepend.apply(ui.messages, items); // before anything sent while this loaded
        scrollToBottom();
        if (messages.length) setStatus("Your earlier conversation was restored.");
      })
      .catch(function (error) {
        if (generation !== state.generation) return;
        if (error instanceof TwinProblem && (error.problem.status === 400 || error.problem.status === 404)) {
          forgetSession();
          return;
        }
        showProblem(error, "load");
      })
      .then(function () {
        ui.messages.removeAttribute("aria-busy");
        updateWelcome();
      });
  }

  function startOver() {
    state.generation++;
    if (state.controller) state.controller.abort();
    state.controller = null;
    setBusy(false);
    setStatus("");
    forgetSession();
    clearConversation();
    hideNotice();
  }

  function newConversation() {
    startOver();
    setStatus("New conversation started.");
    ui.input.focus();
  }

  function confirmDelete() {
    if (!state.sessionId) return;
    ui.dialog.returnValue = "";
    if (typeof ui.dialog.showModal === "function") ui.dialog.showModal();
    else if (window.confirm("Delete this conversation? This cannot be undone.")) deleteConversation();
  }

  function deleteConversation() {
    var id = state.sessionId;
    if (!id) return;
    ui.deleteButton.disabled = true;
    fetch("conversation/" + encodeURIComponent(id), { method: "DELETE" })
      .then(function (response) {
        if (!response.ok && response.status !== 404) return readProblem(response).then(function (p) { throw p; });
        return undefined;
      })
      .then(function () {
        startOver();
        setStatus("Your conversation was deleted.");
        announce("Your conversation was deleted.");
        ui.input.focus();
      })
      .catch(function (error) {
        ui.deleteButton.disabled = !state.sessionId;
        showProblem(error, "delete");
        ui.deleteButton.focus();
      });
  }

  /* ---------- the header ---------- */

  function showProfile(profile) {
    var name = typeof profile.name === "string" ? profile.name.trim() : "";
    var intro = typeof profile.intro === "string" ? profile.intro.trim() : "";
    if (name) {
      state.name = name;
      state.firstName = name.split(/\s+/)[0];
      ui.name.textContent = name;
      document.title = name + " · digital twin";
      ui.avatar.textContent = initials(name);
      ui.welcomeAvatar.textContent = initials(name);
      ui.welcomeTitle.textContent = "Say hello to " + state.firstName;
      ui.welcomeText.textContent = "This is " + name + "'s digital twin. Ask about work, projects or background; " +
        "it answers from what " + state.firstName + " has written.";
      ui.input.placeholder = "Message " + state.firstName + "…";
      ui.disclaimer.textContent = "You are talking to an AI twin of " + name + "; it can be wrong.";
      Array.prototype.forEach.call(ui.messages.querySelectorAll(".from-twin .avatar"), function (a) {
        a.textContent = initials(name);
      });
    }
    ui.intro.textContent = intro;
    ui.intro.hidden = !intro;
  }

  function loadProfile() {
    fetch("profile", { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) return readProblem(response).then(function (p) { throw p; });
        return response.json();
      })
      .then(showProfile)
      .catch(function (error) {
        ui.intro.textContent = "Profile unavailable right now";
        ui.intro.classList.add("unavailable");
        ui.avatar.textContent = "?";
        ui.welcomeAvatar.textContent = "?";
        showProblem(error, "profile");
      });
  }

  /* ---------- wiring ---------- */

  ui.form.addEventListener("submit", function (event) {
    event.preventDefault();
    send(ui.input.value);
    ui.input.focus();
  });

  ui.input.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) return;
    event.preventDefault();
    send(ui.input.value);
  });

  ui.input.addEventListener("input", autosize);

  Array.prototype.forEach.call(document.querySelectorAll(".suggestion"), function (button) {
    button.addEventListener("click", function () {
      send(button.textContent);
      ui.input.focus();
    });
  });

  ui.newButton.addEventListener("click", newConversation);
  ui.deleteButton.addEventListener("click", confirmDelete);
  ui.noticeClose.addEventListener("click", function () {
    hideNotice();
    ui.input.focus();
  });

  ui.dialog.addEventListener("close", function () {
    if (ui.dialog.returnValue === "delete") deleteConversation();
    else ui.deleteButton.focus();
  });

  if (/(?:^|[?&])embed=1(?:&|$)/.test(window.location.search)) {
    document.documentElement.classList.add("embedded");
  }

  loadProfile();
  restore();
  autosize();
})();
