/** The command table: one import per command file. */
import type { Command } from "./command.ts";
import { compareCommand } from "./compare.ts";
import { kfdCommand } from "./kfd.ts";
import { policyCommand } from "./policy.ts";
import { simCommand } from "./sim.ts";

export const commands: Command[] = [simCommand, compareCommand, policyCommand, kfdCommand];
