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

describe("identity fields a GPU cannot tell", () => {
  const fx = amdsmiDoubleFixture(26);
  afterAll(() => fx.close());

  test("a board-info FILE_ERROR on one GPU leaves its strings unknown; the GPU still lists", () => {
    fx.configure();
    fx.ctl.fail("amdsmi_get_gpu_board_info", 1, 14);
    using lib = amdsmiOpen({ path: fx.path });
    lib.init();
    try {
      const all = lib.gpuHandles().map((h) => lib.gpuStatic(h));
      expect(all.map((g) => g.uuid)).toEqual(DOUBLE_GPUS.map((g) => g.uuid));
      expect(all[1]!.serial).toBeUndefined();
      expect(all[1]!.cardModel).toBeUndefined();
      expect(all[0]!.serial).toBe(DOUBLE_GPUS[0]!.serial);
      // A stale handle is still an error, never a read.
      const stale = lib.gpuHandles()[0]!;
      lib.shutDown();
      lib.init();
      expect(() => lib.gpuStatic(stale)).toThrow(/INVAL|NOT_INIT/);
    } finally {
      lib.shutDown();
    }
  });
});
