// The only way the page creates content: text nodes and setAttribute, never markup.
//
// SECURITY: fetched pages are hostile input, and so is anything the API echoes back. Text is
// only ever inserted through el() below, and only http(s) URLs become links or images (a
// javascript: link would run on click).

export const $ = (id) => document.getElementById(id);

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    // Event handlers never come from data; refusing them keeps that true by construction.
    if (/^on/i.test(name)) throw new Error(`refusing event handler attribute ${name}`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) appendChild(node, child);
  return node;
}

/** node.replaceChildren, skipping null/undefined/false children as el() does (the DOM's own would write "null"). */
export function replaceContent(node, ...children) {
  node.replaceChildren();
  for (const child of children) appendChild(node, child);
}

function appendChild(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    for (const each of child) appendChild(node, each);
    return;
  }
  node.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
}

/** The URL, normalised, when it is absolute http(s); else null. */
export function httpUrl(value) {
  if (typeof value !== "string") return null;
  try {
    const url = new URL(value); // no base: relative URLs throw, so they never load from here
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A link opening in a new tab, or plain text when href is not http(s). */
export function link(href, text, attrs = {}) {
  const url = httpUrl(href);
  if (!url) return el("span", attrs, text);
  return el("a", { ...attrs, href: url, target: "_blank", rel: "noopener noreferrer" }, text);
}

export function image(src, alt, attrs = {}) {
  const url = httpUrl(src);
  if (!url) return null;
  return el("img", { ...attrs, src: url, alt, loading: "lazy", referrerpolicy: "no-referrer" });
}

export const plural = (n, word) => `${n.toLocaleString()} ${word}${n === 1 ? "" : "s"}`;

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

let idCount = 0;
/** An id no other element of the page has, for aria-controls. */
export const uniqueId = (prefix) => `${prefix}-${++idCount}`;
