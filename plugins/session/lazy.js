// @ts-check
// lazy: a session per request, amdsmi_init on the first open session and shut down on the
// last close. Frees the device between requests for other users; every request after an
// idle gap pays an init. Stateless, no parameters.

/** @type {import("../types").SessionHooks["mode"]} */
export function mode() {
  return { mode: "lazy" };
}
