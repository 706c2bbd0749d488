/** The command table: one import per command file. */
import type { Command } from "./command.ts";

export const commands: Command[] = [];
