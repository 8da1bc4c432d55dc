/**
 * Deferred work and the CPU it runs on. The flush queue's timer (`fq_flush_timeout`) is armed by
 * `queue_iova` on the CPU whose unmap queued the first entry, and a timer fires on the CPU that
 * armed it; the rcache depot's trimming work (`iova_depot_work_func`) is queued by the free that
 * pushed a magazine, on that CPU. The engine notes which CPU armed each after every piece of work,
 * and when the simulated clock fires one, names the CPU its work is charged to.
 */
import type { Machine } from "./machine.ts";

/** Tracks who armed each controller's deferred work. */
export class DeferredWork {
  private readonly fqs;
  private readonly iovads;
  private readonly armsLast: number[];
  private readonly flushesLast: number[];
  private readonly pushesLast: number[];
  private readonly trimsLast: number[];
  private readonly armer: number[];
  private readonly depotOwner: number[];

  constructor(m: Machine) {
    this.fqs = m.units.map((u) => u.dev.cookie?.fq ?? null);
    this.iovads = m.units.map((u) => u.dev.cookie?.iovad ?? null);
    this.armsLast = this.fqs.map((f) => f?.counters.c.timerArms ?? 0);
    this.flushesLast = this.fqs.map((f) => f?.counters.c.timerFlushes ?? 0);
    this.pushesLast = this.iovads.map((d) => d?.counters.c.depotPushes ?? 0);
    this.trimsLast = this.iovads.map((d) => d?.counters.c.depotTrims ?? 0);
    this.armer = this.fqs.map(() => 0);
    this.depotOwner = this.iovads.map(() => 0);
  }

  /** After a piece of work of controller `unit` on `cpu`: did it arm the timer or fill the depot? */
  noteWork(unit: number, cpu: number): void {
    const f = this.fqs[unit];
    if (f) {
      const arms = f.counters.c.timerArms;
      if (arms !== this.armsLast[unit]) {
        this.armsLast[unit] = arms;
        this.armer[unit] = cpu;
      }
    }
    const d = this.iovads[unit];
    if (d) {
      const pushes = d.counters.c.depotPushes;
      if (pushes !== this.pushesLast[unit]) {
        this.pushesLast[unit] = pushes;
        this.depotOwner[unit] = cpu;
      }
    }
  }

  /**
   * After the clock fired callbacks: the CPU and controller of the deferred work that ran, or
   * null when none did (device completions only).
   */
  fired(): { readonly cpu: number; readonly unit: number } | null {
    let cpu = -1;
    let unit = 0;
    for (let u = 0; u < this.fqs.length; u++) {
      const f = this.fqs[u];
      if (f && f.counters.c.timerFlushes !== this.flushesLast[u]) {
        this.flushesLast[u] = f.counters.c.timerFlushes;
        cpu = this.armer[u] as number;
        unit = u;
      }
      const d = this.iovads[u];
      if (d && d.counters.c.depotTrims !== this.trimsLast[u]) {
        this.trimsLast[u] = d.counters.c.depotTrims;
        if (cpu < 0) cpu = this.depotOwner[u] as number;
        unit = u;
      }
    }
    return cpu < 0 ? null : { cpu, unit };
  }
}
