/* Put the twin on any web page: a floating chat button that opens the chat page in an iframe.
 *
 *   <script src="https://twin.example.com/static/embed.js" data-twin="https://twin.example.com" async></script>
 *
 * Optional attributes: data-label (the button's accessible name, default
 * "Chat with my digital twin"), data-position ("right" or "left") and
 * data-color (the button's colour). The twin must allow the site in
 * TWIN_FRAME_ANCESTORS. Styles are set through the DOM, not inline markup,
 * so a strict Content-Security-Policy on the host page does not block them.
 */
(function () {
  "use strict";

  var script = document.currentScript || document.querySelector("script[data-twin]");
  if (!script || window.__twinServerEmbed) return;
  window.__twinServerEmbed = true;

  var base;
  try {
    base = new URL(script.getAttribute("data-twin") || new URL(".", script.src).href.replace(/static\/$/, ""), window.location.href);
  } catch (e) {
    return;
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") return;
  if (!/\/$/.test(base.pathname)) base.pathname += "/";
  var pageUrl = new URL("?embed=1", base).href;

  var label = script.getAttribute("data-label") || "Chat with my digital twin";
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";
  var color = script.getAttribute("data-color") || "#4f46e5";
  var SVG = "http://www.w3.org/2000/svg";
  var panelId = "twin-server-chat-" + Math.random().toString(36).slice(2, 8);

  function icon(d) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "26");
    svg.setAttribute("height", "26");
    svg.setAttribute("aria-hidden", "true");
    svg.setAttribute("focusable", "false");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.appendChild(path);
    return svg;
  }

  var chatIcon = icon("M21 12a8 8 0 0 1-11.6 7.1L4 20l1-4.6A8 8 0 1 1 21 12z");
  var closeIcon = icon("M6 6l12 12M18 6 6 18");

  var button = document.createElement("button");
  button.type = "button";
  button.setAttribute("aria-label", label);
  button.setAttribute("aria-expanded", "false");
  button.setAttribute("aria-controls", panelId);
  button.title = label;
  button.appendChild(chatIcon);
  Object.assign(button.style, {
    position: "fixed", bottom: "20px", zIndex: "2147483001",
    width: "56px", height: "56px", padding: "0", border: "0", borderRadius: "50%",
    display: "grid", placeItems: "center", cursor: "pointer",
    background: color, color: "#fff",
    boxShadow: "0 6px 24px rgba(20, 24, 40, 0.28)", transition: "transform 0.15s ease"
  });
  button.style[side] = "20px";

  var panel = document.createElement("div");
  panel.id = panelId;
  panel.setAttribute("role", "region");
  panel.setAttribute("aria-label", label);
  panel.hidden = true;
  Object.assign(panel.style, {
    display: "none", position: "fixed", zIndex: "2147483000", overflow: "hidden",
    borderRadius: "16px", background: "#fff",
    boxShadow: "0 12px 48px rgba(20, 24, 40, 0.3)"
  });

  var iframe = null;
  var phone = window.matchMedia("(max-width: 480px)");

  function layout() {
    var small = phone.matches;
    Object.assign(panel.style, small
      ? { top: "8px", bottom: "86px", left: "8px", right: "8px", width: "auto", height: "auto" }
      : { top: "auto", bottom: "88px", width: "390px", height: "min(640px, calc(100vh - 112px))" });
    if (!small) {
      panel.style.left = side === "left" ? "20px" : "auto";
      panel.style.right = side === "right" ? "20px" : "auto";
    }
  }

  function open() {
    if (!iframe) {
      iframe = document.createElement("iframe");
      iframe.src = pageUrl;
      iframe.title = label;
      Object.assign(iframe.style, { width: "100%", height: "100%", border: "0", display: "block" });
      panel.appendChild(iframe);
    }
    panel.hidden = false;
    panel.style.display = "block";
    button.setAttribute("aria-expanded", "true");
    button.replaceChild(closeIcon, button.firstChild);
    button.setAttribute("aria-label", "Close chat");
    button.title = "Close chat";
    iframe.focus();
  }

  function close() {
    panel.hidden = true;
    panel.style.display = "none";
    button.setAttribute("aria-expanded", "false");
    button.replaceChild(chatIcon, button.firstChild);
    button.setAttribute("aria-label", label);
    button.title = label;
    button.focus();
  }

  button.addEventListener("click", function () {
    if (panel.hidden) open(); else close();
  });
  button.addEventListener("mouseenter", function () { button.style.transform = "scale(1.06)"; });
  button.addEventListener("mouseleave", function () { button.style.transform = ""; });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape" && !panel.hidden) close();
  });
  if (phone.addEventListener) phone.addEventListener("change", layout);

  function mount() {
    layout();
    document.body.appendChild(panel);
    document.body.appendChild(button);
  }

  if (document.body) mount();
  else document.addEventListener("DOMContentLoaded", mount);
})();
