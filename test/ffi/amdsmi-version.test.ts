/**
 * A 24.x/25.x amdsmi tells its version only after an init. In the agent every Worker holds its
 * own binding of the one library, and only one of them makes the init: the others must still
 * learn the layout (else power and the board strings would silently go missing).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { amdsmiOpen } from "../../runtime/ffi/amdsmi.ts";
import { amdsmiDoubleFixture, DOUBLE_GPUS } from "./amdsmi-double.ts";

describe.each([24, 25] as const)("layout %d: a binding that did not init", (layout) => {
  const fx = amdsmiDoubleFixture(layout);
  afterAll(() => fx.close());

  test("learns the version from the library once another binding initialised it", () => {
    fx.configure();
    using a = amdsmiOpen({ path: fx.path });
    using b = amdsmiOpen({ path: fx.path });
    expect(b.info.version).toBeUndefined();
    a.init();
    try {
      const h = b.gpuHandles()[0]!;
      expect(b.gpuPower(h).socketW).toBe(DOUBLE_GPUS[0]!.power_socket_w);
      expect(b.gpuStatic(h).serial).toBe(DOUBLE_GPUS[0]!.serial);
      expect(b.info.version).toBe(a.info.version);
      expect(b.info.layout).toBe(String(layout) as "24" | "25");
    } finally {
      a.shutDown();
    }
  });
});
