import { describe, expect, it } from "vitest";
import {
  CounterSet,
  SimClock,
  collectCounters,
  collectGauges,
  diffCounters,
} from "../src/index.ts";

describe("SimClock", () => {
  it("fires callbacks in time order, ties in scheduling order", () => {
    const clock = new SimClock();
    const log: string[] = [];
    clock.schedule(30, () => log.push("c"));
    clock.schedule(10, () => log.push("a"));
    clock.schedule(10, () => log.push("b"));
    clock.schedule(100, () => log.push("late"));
    clock.advance(50);
    expect(log).toEqual(["a", "b", "c"]);
    expect(clock.now).toBe(50);
    expect(clock.pending).toBe(1);
  });

  it("does not move unless told to", () => {
    const clock = new SimClock();
    let fired = false;
    clock.schedule(1, () => (fired = true));
    expect(fired).toBe(false);
    expect(clock.now).toBe(0);
    expect(clock.nextAt()).toBe(1);
  });

  it("shows each callback its own time and runs callbacks scheduled by callbacks", () => {
    const clock = new SimClock();
    const seen: number[] = [];
    clock.schedule(10, (t) => {
      seen.push(t);
      clock.schedule(5, (t2) => seen.push(t2));
    });
    clock.advanceTo(100);
    expect(seen).toEqual([10, 15]);
  });

  it("cancels timers", () => {
    const clock = new SimClock();
    let n = 0;
    const id = clock.schedule(10, () => n++);
    expect(clock.cancel(id)).toBe(true);
    expect(clock.cancel(id)).toBe(false);
    clock.advance(20);
    expect(n).toBe(0);
    expect(clock.nextAt()).toBe(Infinity);
  });

  it("passes each timer its argument, one shared callback serving many timers", () => {
    const clock = new SimClock();
    const seen: string[] = [];
    const cb = (t: number, name: string) => seen.push(`${name}@${t}`);
    clock.schedule(20, cb, "b");
    clock.schedule(10, cb, "a");
    clock.scheduleAt(20, cb, "c");
    clock.advance(30);
    expect(seen).toEqual(["a@10", "b@20", "c@20"]);
  });

  it("counts pending timers through cancels and fires the rest in order", () => {
    const clock = new SimClock();
    const out: number[] = [];
    const ids = [50, 10, 40, 20, 30].map((t) => clock.scheduleAt(t, () => out.push(t)));
    expect(clock.cancel(ids[1] as number)).toBe(true);
    expect(clock.cancel(ids[3] as number)).toBe(true);
    expect(clock.pending).toBe(3);
    expect(clock.nextAt()).toBe(30);
    clock.advanceTo(45);
    expect(out).toEqual([30, 40]);
    expect(clock.cancel(ids[2] as number)).toBe(false);
    expect(clock.pending).toBe(1);
    clock.advance(10);
    expect(out).toEqual([30, 40, 50]);
    expect(clock.pending).toBe(0);
  });

  it("runs the next event on request", () => {
    const clock = new SimClock();
    clock.schedule(7, () => undefined);
    expect(clock.runNext()).toBe(true);
    expect(clock.now).toBe(7);
    expect(clock.runNext()).toBe(false);
  });

  it("refuses to go back in time or schedule in the past", () => {
    const clock = new SimClock();
    clock.advance(10);
    expect(() => clock.advanceTo(5)).toThrow(/cannot move the clock back from 10 to 5 ns/);
    expect(() => clock.scheduleAt(3, () => undefined)).toThrow(/before now/);
    expect(() => clock.schedule(-1, () => undefined)).toThrow(/below 0/);
  });

  it("keeps a large queue ordered", () => {
    const clock = new SimClock();
    const out: number[] = [];
    for (let i = 0; i < 1000; i++) {
      const t = (i * 7919) % 1000;
      clock.scheduleAt(t, () => out.push(t));
    }
    clock.advance(1000);
    expect(out).toEqual([...out].sort((a, b) => a - b));
    expect(out).toHaveLength(1000);
  });
});

describe("CounterSet", () => {
  it("counts, snapshots and diffs", () => {
    const cs = new CounterSet("iova", ["allocs", "frees"] as const);
    cs.c.allocs += 3;
    const a = cs.snapshot();
    cs.c.allocs++;
    cs.c.frees += 2;
    const d = diffCounters(a, cs.snapshot());
    expect(d).toEqual({ allocs: 1, frees: 2 });
    expect(a).toEqual({ allocs: 3, frees: 0 });
    expect(collectCounters([cs])).toEqual({ "iova.allocs": 4, "iova.frees": 2 });
    cs.reset();
    expect(cs.snapshot()).toEqual({ allocs: 0, frees: 0 });
  });

  it("refuses duplicate names", () => {
    expect(() => new CounterSet("x", ["a", "a"])).toThrow(/declared twice/);
  });

  it("says which of its names are gauges, and refuses a gauge it does not count", () => {
    const cs = new CounterSet("iova", ["allocs", "liveRanges"] as const, ["liveRanges"]);
    const fq = new CounterSet("fq", ["queued", "pending"] as const, ["pending"]);
    expect(cs.gauges).toEqual(["liveRanges"]);
    expect(collectGauges([cs, fq, new CounterSet("x", ["a"])])).toEqual([
      "iova.liveRanges",
      "fq.pending",
    ]);
    expect(() => new CounterSet("x", ["a"], ["b" as "a"])).toThrow(/gauge "b" is not a counter/);
  });
});
