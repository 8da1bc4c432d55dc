import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { EventHeap } from "../src/engine/event-heap.ts";

describe("EventHeap", () => {
  it("pops events by time, ties in the order they were pushed, across pushes between pops", () => {
    // Each op is a push (time, from a small set so that ties are common) or a pop.
    const op = fc.oneof(
      fc.record({ push: fc.integer({ min: 0, max: 20 }) }),
      fc.constant({ pop: true as const }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 600 }), (ops) => {
        const heap = new EventHeap();
        const model: { time: number; order: number }[] = [];
        let order = 0;
        for (const o of ops) {
          if ("push" in o) {
            heap.push(o.push / 4, o.push % 3, order);
            model.push({ time: o.push / 4, order: order++ });
          } else if (model.length > 0) {
            model.sort((a, b) => a.time - b.time || a.order - b.order);
            const want = model.shift() as { time: number; order: number };
            expect([heap.peekTime(), heap.peekArg()]).toEqual([want.time, want.order]);
            heap.pop();
          }
          expect(heap.size).toBe(model.length);
        }
        expect(heap.peekTime()).toBe(
          model.length === 0 ? Infinity : Math.min(...model.map((m) => m.time)),
        );
      }),
      { numRuns: 200 },
    );
  });
});
