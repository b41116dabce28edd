// A time throttle: lets a call through at most once per interval.

/** Returns `ready()`, true at most once per `intervalMs` (the first call is always ready). */
export function createThrottle(intervalMs: number, now: () => number = Date.now): { ready: () => boolean } {
  let last: number | null = null;
  return {
    ready() {
      const t = now();
      if (last !== null && t - last < intervalMs) return false;
      last = t;
      return true;
    },
  };
}
