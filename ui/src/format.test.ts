// The numbers people read: durations, estimates, sizes, counts.

import { describe, expect, test } from "vitest";
import { baseName, formatBytes, formatCount, formatDb, formatDuration, formatEstimate, formatPercent } from "./format";

describe("format", () => {
  test("durations", () => {
    expect(formatDuration(42.4)).toBe("42 s");
    expect(formatDuration(185)).toBe("3 min 05 s");
    expect(formatDuration(4020)).toBe("1 h 07 min");
    expect(formatDuration(-1)).toBe("–");
  });

  test("estimates round to what they can promise", () => {
    expect(formatEstimate(20)).toBe("under a minute");
    expect(formatEstimate(250)).toBe("about 4 min");
    expect(formatEstimate(7200)).toBe("about 2 h");
    expect(formatEstimate(5400)).toBe("about 1 h 30 min");
  });

  test("sizes, counts, decibels, percentages, names", () => {
    expect(formatBytes(812)).toBe("812 B");
    expect(formatBytes(1_450_000)).toBe("1.4 MB");
    expect(formatBytes(23_000_000)).toBe("23 MB");
    expect(formatCount(24000)).toBe("24,000");
    expect(formatDb(24.314)).toBe("24.31 dB");
    expect(formatDb(null)).toBe("–");
    expect(formatPercent(0.426)).toBe("43 %");
    expect(formatPercent(1.2)).toBe("100 %");
    expect(baseName("/home/me/photos/shoe/")).toBe("shoe");
    expect(baseName("C:\\photos\\mug.zip")).toBe("mug.zip");
  });
});
