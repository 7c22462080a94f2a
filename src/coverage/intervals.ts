// Half-open µs intervals [from, to): the arithmetic of coverage certificates (pure).
export type Interval = readonly [number, number];

/** Sorted, disjoint, non-empty intervals covering the same points as `xs`. */
export function union(xs: readonly Interval[]): Interval[] {
  const sorted = xs.filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0]);
  const out: [number, number][] = [];
  for (const [a, b] of sorted) {
    const last = out[out.length - 1];
    if (last && a <= last[1]) last[1] = Math.max(last[1], b);
    else out.push([a, b]);
  }
  return out;
}

/** Points of `xs` not in any of `minus`. */
export function subtract(xs: readonly Interval[], minus: readonly Interval[]): Interval[] {
  const cut = union(minus);
  const out: Interval[] = [];
  for (const [a0, b] of union(xs)) {
    let a = a0;
    for (const [c, d] of cut) {
      if (d <= a || c >= b) continue;
      if (c > a) out.push([a, c]);
      a = Math.max(a, d);
      if (a >= b) break;
    }
    if (a < b) out.push([a, b]);
  }
  return out;
}

export const intersect = (xs: readonly Interval[], w: Interval): Interval[] => union(xs.map(([a, b]): Interval => [Math.max(a, w[0]), Math.min(b, w[1])]));

export const lengthOf = (xs: readonly Interval[]): number => union(xs).reduce((s, [a, b]) => s + (b - a), 0);

/** Points in every one of the lists (each list a union of intervals). */
export function intersectAll(lists: readonly (readonly Interval[])[]): Interval[] {
  let acc = union(lists[0] ?? []);
  for (const next of lists.slice(1)) acc = subtract(acc, subtract(acc, next));
  return acc;
}
