// Relative and absolute times, and durations. Pure functions: the caller
// passes "now", so that tests need no clock.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const MONTH = 30 * DAY;
const YEAR = 365 * DAY;

/** Parses an RFC 3339 date-time; NaN when it is not one. */
export function parseTime(iso: string | null | undefined): number {
  if (!iso) return NaN;
  return Date.parse(iso);
}

/**
 * A short relative time such as "just now", "5 min ago", "3 h ago",
 * "2 days ago", "4 months ago", "in 2 min" (a time ahead of now, e.g. a
 * clock skew or a scheduled sync). "unknown" for a time that is not one.
 */
export function relativeTime(t: number, now: number): string {
  if (!Number.isFinite(t)) return "unknown";
  const d = now - t;
  const future = d < 0;
  const a = Math.abs(d);
  let s: string;
  if (a < 45_000) return future ? "in a moment" : "just now";
  if (a < HOUR) s = `${Math.max(1, Math.round(a / MINUTE))} min`;
  else if (a < DAY) s = `${Math.round(a / HOUR)} h`;
  else if (a < MONTH) s = plural(Math.round(a / DAY), "day");
  else if (a < YEAR) s = plural(Math.round(a / MONTH), "month");
  else s = plural(Math.round(a / YEAR), "year");
  return future ? `in ${s}` : `${s} ago`;
}

function plural(n: number, unit: string): string {
  return `${n} ${unit}${n === 1 ? "" : "s"}`;
}

// One formatter for every absolute time (Date.toLocaleString makes one per call).
let localFormat: Intl.DateTimeFormat | null = null;

/** The absolute time shown on hover: local time and the UTC instant. */
export function absoluteTime(t: number): string {
  if (!Number.isFinite(t)) return "unknown time";
  localFormat ??= new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "long" });
  const d = new Date(t);
  return `${localFormat.format(d)} (${d.toISOString()})`;
}

/** A duration in milliseconds as "850 ms", "4.2 s", "3 min 5 s", "2 h 3 min". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < MINUTE) return `${Math.round(ms / 1000)} s`;
  if (ms < HOUR) {
    const m = Math.floor(ms / MINUTE);
    const s = Math.round((ms - m * MINUTE) / 1000);
    return s === 0 ? `${m} min` : `${m} min ${s} s`;
  }
  const h = Math.floor(ms / HOUR);
  const m = Math.round((ms - h * HOUR) / MINUTE);
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}
