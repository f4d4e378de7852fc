// A record (GET /records, /info) as a card showing every field its parser gave.
//
// Each kind lists the fields it lays out itself; any other field of the data (one a newer
// parser adds) is listed after them by its key, so nothing a parser stores is hidden. Every
// element showing a field carries data-field="<key>".
import { el, image, link, plural, uniqueId } from "./dom.js";

const HEADLINES_SHOWN = 10; // the rest behind "Show all N headlines"
const NOT_SHOWN = new Set(["kind", "explain"]); // the card's type; explain is a debugging aid

/** The nodes for a record's details: its data as a card, or its error when it failed. */
export function recordView(record) {
  if (record.status === "failed") return [failureView(record.error)];
  const data = isObject(record.data) ? record.data : {};
  const render = RENDERERS[data.kind] || rawView;
  return [render(data), fetchedNote(record)];
}

export function failureView(error) {
  const code = error && error.code ? String(error.code) : "unknown_error";
  const message = error && error.message ? String(error.message) : "no details were recorded";
  return el("p", { class: "error" }, el("code", {}, code), " ", message);
}

function fetchedNote(record) {
  const when = new Date(record.fetched_at);
  if (Number.isNaN(when.getTime())) return null;
  const version = record.parser_version ? ` · parser version ${record.parser_version}` : "";
  return el("p", { class: "note" }, "Fetched ", el("time", { datetime: when.toISOString() }, when.toLocaleString()), version);
}

// ---- fields ------------------------------------------------------------------------------------

const isObject = (value) => value !== null && typeof value === "object" && !Array.isArray(value);
const isEmpty = (value) => value === null || value === undefined || value === "" || (Array.isArray(value) && value.length === 0);
function asText(value) {
  if (typeof value === "string") return value;
  return typeof value === "number" ? value.toLocaleString() : JSON.stringify(value);
}
const joined = (list) => (Array.isArray(list) ? list.map(asText).join(", ") : asText(list));

/** A <dl> of the given [key, label, format] facts, then every field no one has laid out. */
function factList(data, facts, laidOut) {
  const rows = [];
  const add = (key, label, format = asText) => {
    if (!isEmpty(data[key])) rows.push(el("dt", {}, label), el("dd", { "data-field": key }, format(data[key])));
  };
  for (const [key, label, format] of facts) add(key, label, format);
  const known = new Set([...laidOut, ...facts.map(([key]) => key), ...NOT_SHOWN]);
  for (const key of Object.keys(data).filter((key) => !known.has(key))) add(key, key);
  return rows.length ? el("dl", { class: "facts" }, rows) : null;
}

function title(data, href, fallback = "(untitled)") {
  const text = data.title ? String(data.title) : fallback;
  return el("h3", { class: "title", "data-field": data.title ? "title" : null }, link(href, text));
}

// ---- Goodreads books ----------------------------------------------------------------------------

const BOOK_FACTS = [
  ["series", "Series", seriesText],
  ["isbn", "ISBN"],
  ["isbn13", "ISBN-13"],
  ["asin", "ASIN"],
  ["pages", "Pages"],
  ["format", "Format"],
  ["language", "Language"],
  ["publisher", "Publisher"],
  ["published", "Published"],
  ["first_published", "First published"],
  ["genres", "Genres", genreList],
  ["book_id", "Goodreads id"],
];
const BOOK_LAID_OUT = ["title", "url", "authors", "rating", "ratings_count", "reviews_count", "cover_url",
  "description", "librarian_note"];

function bookView(data) {
  const name = data.title ? String(data.title) : "(untitled)";
  const authors = Array.isArray(data.authors) ? data.authors.map(String) : [];
  return el("div", { class: "card book" },
    image(data.cover_url, `Cover of ${name}`, { class: "cover", "data-field": "cover_url" }),
    el("div", { class: "card-text" },
      el("h3", { class: "title", "data-field": "title" }, link(data.url, name, { "data-field": "url" })),
      authors.length ? el("p", { class: "authors", "data-field": "authors" }, `by ${authors.join(", ")}`) : null,
      ratingLine(data),
      factList(data, BOOK_FACTS, BOOK_LAID_OUT),
      data.librarian_note ? el("p", { class: "librarian-note", "data-field": "librarian_note" },
        el("strong", {}, "Librarian's note: "), String(data.librarian_note)) : null,
      data.description ? el("p", { class: "description", "data-field": "description" }, String(data.description)) : null));
}

function ratingLine(data) {
  const parts = [];
  if (typeof data.rating === "number") {
    parts.push(el("span", { "data-field": "rating" }, el("span", { class: "star", "aria-hidden": "true" }, "★ "),
      `Rating ${data.rating.toFixed(2)} / 5`));
  }
  for (const [key, word] of [["ratings_count", "rating"], ["reviews_count", "review"]]) {
    if (typeof data[key] === "number") parts.push(el("span", { "data-field": key }, plural(data[key], word)));
  }
  if (!parts.length) return null;
  return el("p", { class: "rating" }, parts.flatMap((part, i) => (i ? [" · ", part] : [part])));
}

function seriesText(series) {
  if (!isObject(series)) return asText(series);
  const position = series.position ? ` #${series.position}` : "";
  return `${series.name ?? "(unnamed)"}${position}`;
}

function genreList(genres) {
  if (!Array.isArray(genres)) return asText(genres);
  return el("ul", { class: "genres" }, genres.map((genre) => el("li", {}, asText(genre))));
}

// ---- news front pages ------------------------------------------------------------------------------

function newsView(data) {
  const headlines = Array.isArray(data.headlines) ? data.headlines.filter(isObject) : [];
  const list = el("ol", { class: "headlines", id: uniqueId("headlines"), "data-field": "headlines" },
    headlines.map((item, i) => headlineItem(item, i >= HEADLINES_SHOWN)));
  return el("div", { class: "card news" },
    el("div", { class: "card-text" },
      el("h3", { class: "title", "data-field": data.site ? "site" : null }, data.site ? String(data.site) : "News"),
      el("p", { class: "note" }, plural(headlines.length, "headline")),
      headlines.length ? list : el("p", { class: "note" }, "No headlines found."),
      expander(list, headlines.length),
      factList(data, [], ["site", "headlines"])));
}

/** One story: its kicker, title link, section and summary, its image; sub-links marked as such. */
function headlineItem(item, hidden) {
  const text = item.title ? String(item.title) : "(untitled)";
  return el("li", { class: item.sublink ? "sublink" : null, hidden, "data-position": item.position },
    el("div", { class: "headline" },
      el("div", { class: "headline-text" },
        item.sublink ? el("span", { class: "sublink-mark" }, "related link") : null,
        item.kicker ? el("span", { class: "kicker" }, String(item.kicker)) : null,
        link(item.url, text),
        item.section ? el("span", { class: "section" }, String(item.section)) : null,
        item.summary ? el("p", { class: "headline-summary" }, String(item.summary)) : null),
      image(item.image, "", { class: "headline-image" }))); // decorative: the title beside it says what it is
}

/** "Show all N headlines" under a list longer than HEADLINES_SHOWN; it toggles the rest. */
function expander(list, total) {
  if (total <= HEADLINES_SHOWN) return null;
  const button = el("button", { type: "button", class: "secondary expand", "aria-expanded": "false", "aria-controls": list.id },
    `Show all ${plural(total, "headline")}`);
  button.addEventListener("click", () => {
    const expanded = button.getAttribute("aria-expanded") !== "true";
    [...list.children].slice(HEADLINES_SHOWN).forEach((item) => { item.hidden = !expanded; });
    button.setAttribute("aria-expanded", String(expanded));
    button.textContent = expanded ? `Show the first ${HEADLINES_SHOWN} only` : `Show all ${plural(total, "headline")}`;
  });
  return button;
}

// ---- any other page (ALLOW_ANY_SITE) ---------------------------------------------------------------

const PAGE_FACTS = [
  ["site_name", "Site"],
  ["authors", "By", joined],
  ["author", "By"], // older records have only the joined names
  ["published", "Published"],
  ["type", "Type"],
  ["language", "Language"],
  ["word_count", "Words"],
  ["canonical_url", "Canonical URL", (url) => link(url, String(url))],
];

function pageView(data) {
  // author is authors joined: listed once, unless a record has only the one
  const facts = isEmpty(data.authors) ? PAGE_FACTS : PAGE_FACTS.filter(([key]) => key !== "author");
  return el("div", { class: "card page" },
    image(data.image, "", { class: "thumb", "data-field": "image" }), // decorative: the title says what it is
    el("div", { class: "card-text" },
      title(data, data.canonical_url),
      data.description ? el("p", { class: "description", "data-field": "description" }, String(data.description)) : null,
      factList(data, facts, ["title", "description", "image", "author"])));
}

/** Kinds this page does not know yet: the data as JSON text. */
function rawView(data) {
  return el("pre", { class: "raw" }, JSON.stringify(data, null, 2));
}

const RENDERERS = {
  goodreads_book: bookView,
  news_headlines: newsView,
  page: pageView,
};
