/** The agent's main thread: helpers for work that must leave room for scrapes and timers. */

/** Let timers and I/O (scrapes) run before going on. */
export const yieldToLoop = (): Promise<void> => new Promise<void>((resolve) => setImmediate(resolve));
