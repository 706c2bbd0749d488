/** The command table: one import per command file. */
import type { Command } from "./command.ts";
import { simCommand } from "./sim.ts";

export const commands: Command[] = [simCommand];
