/** The command table: one import per command file. */
import type { Command } from "./command.ts";
import { kfdCommand } from "./kfd.ts";
import { policyCommand } from "./policy.ts";

export const commands: Command[] = [policyCommand, kfdCommand];
