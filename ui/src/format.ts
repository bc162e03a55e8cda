// Numbers for people: durations, byte sizes, counts, decibels. Pure functions, no DOM.

/** Seconds in a minute and an hour. */
const MINUTE = 60;
const HOUR = 3600;

/** A duration as a person reads it: "42 s", "3 min 05 s", "1 h 07 min". */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < MINUTE) return `${s} s`;
  if (s < HOUR) return `${Math.floor(s / MINUTE)} min ${pad2(s % MINUTE)} s`;
  return `${Math.floor(s / HOUR)} h ${pad2(Math.floor((s % HOUR) / MINUTE))} min`;
}

/** An estimate, rounded so it does not claim more precision than it has: "about 4 min". */
export function formatEstimate(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "unknown";
  if (seconds < MINUTE) return "under a minute";
  if (seconds < HOUR) return `about ${Math.round(seconds / MINUTE)} min`;
  const hours = Math.floor(seconds / HOUR);
  const minutes = Math.round((seconds % HOUR) / MINUTE);
  return minutes === 0 ? `about ${hours} h` : `about ${hours} h ${minutes} min`;
}

/** Decimal units, as file managers on Linux and macOS show sizes. */
const BYTE_UNITS = ["B", "kB", "MB", "GB", "TB"] as const;

/** A file size: "812 B", "1.4 MB", "23 MB" (one decimal below 10). */
export function formatBytes(bytes: number): string {
  if (!Number.isFinite(bytes) || bytes < 0) return "–";
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < BYTE_UNITS.length - 1) {
    value /= 1000;
    unit += 1;
  }
  const digits = unit === 0 || value >= 10 ? 0 : 1;
  return `${value.toFixed(digits)} ${BYTE_UNITS[unit]}`;
}

const COUNT = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

/** A count with thousands grouped: "24,000". */
export function formatCount(n: number): string {
  return COUNT.format(n);
}

/** A PSNR: "24.31 dB", or "–" when none was measured. */
export function formatDb(db: number | null | undefined): string {
  return db === null || db === undefined || !Number.isFinite(db) ? "–" : `${db.toFixed(2)} dB`;
}

/** A fraction 0..=1 as a whole percentage: "42 %". */
export function formatPercent(fraction: number): string {
  const clamped = Math.min(1, Math.max(0, Number.isFinite(fraction) ? fraction : 0));
  return `${Math.round(clamped * 100)} %`;
}

/** The last component of a path, either separator: what a list shows for a folder or file. */
export function baseName(path: string): string {
  const trimmed = path.replace(/[\\/]+$/, "");
  const cut = Math.max(trimmed.lastIndexOf("/"), trimmed.lastIndexOf("\\"));
  return cut < 0 ? trimmed : trimmed.slice(cut + 1);
}

function pad2(n: number): string {
  return n.toString().padStart(2, "0");
}
