/**
 * Seeded PRNG for the simulator: xoshiro128** (Blackman & Vigna), seeded through
 * splitmix32. 32-bit integer arithmetic only, so every platform gives the same stream.
 */

/** splitmix32 step: a well-mixed 32-bit value from a state. */
export function splitmix32(state: number): number {
  let z = (state + 0x9e3779b9) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  /** @param seed any integer; equal seeds give equal streams. */
  constructor(seed: number) {
    let s = seed | 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) | 0;
      return splitmix32(s);
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next();
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1;
  }

  /** Next 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return result;
  }

  /** Uniform float in [0, 1) with 32 bits of randomness. */
  nextFloat(): number {
    return this.nextU32() / 4294967296;
  }

  /** Uniform integer in [0, n), n <= 2^32. */
  nextInt(n: number): number {
    return Math.floor(this.nextFloat() * n);
  }

  /** A child generator with an independent stream (for a workload stream). */
  fork(salt: number): Prng {
    return new Prng(this.nextU32() ^ splitmix32(salt));
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
