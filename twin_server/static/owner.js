// The owner's inbox: reads /owner/... with the owner key the owner types in (kept for this tab only).
// Everything shown is set as text, never as markup: visitors wrote it.
"use strict";

(function () {
  const KEY = "twin-server:owner-key";
  const $ = (id) => document.getElementById(id);
  let cursor = null;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function when(stamp) {
    const date = new Date(stamp);
    return isNaN(date) ? stamp : date.toLocaleString();
  }

  function status(text, isError) {
    $("status").textContent = text;
    $("status").classList.toggle("error", Boolean(isError));
  }

  class Refused extends Error {}

  async function api(path, options) {
    const key = sessionStorage.getItem(KEY);
    const response = await fetch(path, {
      ...options,
      headers: { Authorization: "Bearer " + key, Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 401) throw new Refused("That owner key is not valid.");
    if (response.status === 429) {
      throw new Refused("Too many tries: wait " + (response.headers.get("Retry-After") || "a minute") + " s.");
    }
    if (!response.ok) throw new Error("The server answered " + response.status + ".");
    return response.status === 204 ? null : response.json();
  }

  function lead(item) {
    const li = element("li");
    const row = element("div", "row");
    const who = element("div");
    who.append(element("div", "who", item.name ? item.name + " <" + item.email + ">" : item.email));
    who.append(element("div", "meta", when(item.created_at) + " · session " + item.session_id));
    const remove = element("button", "delete", "Delete");
    remove.type = "button";
    remove.setAttribute("aria-label", "Delete the lead " + item.email);
    remove.addEventListener("click", async () => {
      try {
        await api("owner/leads/" + encodeURIComponent(item.id), { method: "DELETE" });
        li.remove();
        $("lead-count").textContent = "(" + $("leads").children.length + ")";
        $("no-leads").hidden = $("leads").children.length > 0;
        status("Lead deleted.");
      } catch (error) {
        status(error.message, true);
      }
    });
    row.append(who, remove);
    li.append(row);
    if (item.notes) li.append(element("p", "text", item.notes));
    return li;
  }

  function question(item) {
    const li = element("li");
    li.append(element("p", "text", item.question));
    const times = item.count === 1 ? "once" : item.count + " times";
    li.append(element("div", "meta", "asked " + times + " · last " + when(item.last_asked)));
    return li;
  }

  function conversation(item) {
    const li = element("li");
    li.append(element("div", "meta", "session " + item.session_id + " · " + when(item.last_activity)));
    for (const message of item.messages) {
      const line = element("p", "message text");
      line.append(element("span", "role", message.role === "user" ? "visitor" : "twin"));
      line.append(document.createTextNode(message.content));
      li.append(line);
    }
    return li;
  }

  async function more() {
    const page = await api("owner/conversations?limit=20" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : ""));
    for (const item of page.conversations) $("conversations").append(conversation(item));
    cursor = page.next_cursor;
    $("more").hidden = !cursor;
  }

  async function load() {
    status("Loading…");
    try {
      const [leads, questions] = await Promise.all([api("owner/leads"), api("owner/unanswered")]);
      $("leads").replaceChildren(...leads.leads.map(lead));
      $("lead-count").textContent = "(" + leads.leads.length + ")";
      $("no-leads").hidden = leads.leads.length > 0;
      $("questions").replaceChildren(...questions.questions.map(question));
      $("question-count").textContent = "(" + questions.questions.length + ")";
      $("no-questions").hidden = questions.questions.length > 0;
      $("conversations").replaceChildren();
      cursor = null;
      await more();
      $("inbox").hidden = false;
      $("key-form").hidden = true;
      status("");
    } catch (error) {
      if (error instanceof Refused) {
        sessionStorage.removeItem(KEY);
        $("inbox").hidden = true;
        $("key-form").hidden = false;
      }
      status(error.message, true);
    }
  }

  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("owner-key").value.trim());
    $("owner-key").value = "";
    load();
  });
  $("more").addEventListener("click", () => more().catch((error) => status(error.message, true)));
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    $("inbox").hidden = true;
    $("key-form").hidden = false;
    status("The key is forgotten.");
  });
  if (sessionStorage.getItem(KEY)) load();
})();
