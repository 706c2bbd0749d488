/** The command table: one import per command file. */
import type { Command } from "./command.ts";
import { agentCommand } from "./agent.ts";
import { compareCommand } from "./compare.ts";
import { kfdCommand } from "./kfd.ts";
import { policyCommand } from "./policy.ts";
import { simCommand } from "./sim.ts";
import { smiCommand } from "./smi.ts";

export const commands: Command[] = [agentCommand, smiCommand, simCommand, compareCommand, policyCommand, kfdCommand];
