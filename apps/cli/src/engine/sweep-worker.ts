/** The worker thread of `dmasim sweep`: runs the grid points it is sent. */
import { parentPort } from "node:worker_threads";
import { type GridPoint, runPoint } from "./sweep.ts";

parentPort?.on("message", (p: GridPoint) => {
  parentPort?.postMessage(runPoint(p));
});
