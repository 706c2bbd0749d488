/** The command table: one import per command file. */
import type { Command } from "./command.ts";
import { kfdCommand } from "./kfd.ts";
import { policyCommand } from "./policy.ts";
import { simCommand } from "./sim.ts";

export const commands: Command[] = [simCommand, policyCommand, kfdCommand];
