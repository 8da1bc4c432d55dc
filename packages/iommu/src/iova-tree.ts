/**
 * The ordered set of allocated IOVA ranges behind `IovaDomain` (Linux keeps an rbtree of
 * `struct iova`). This is a treap with parent pointers, augmented with the free gap below each
 * node and the largest such gap in each subtree, so the top-down first-fit search that iova.c
 * does with a linear `rb_prev` walk runs in O(log n) while finding exactly the same range.
 * The engine prices each tree operation at a constant: the linear walk's cost in a fragmented
 * or nearly full space, and the domain-wide lock, are not modelled.
 */

/** An allocated or reserved IOVA range, in granule-sized page frames, both ends inclusive. */
export interface IovaRange {
  readonly pfnLo: number;
  readonly pfnHi: number;
}

/** A node of the tree (Linux `struct iova`). */
export class IovaNode implements IovaRange {
  pfnLo: number;
  pfnHi: number;
  /** Free pfns between the previous node's end and this node's start. */
  gap = 0;
  /** Largest `gap` in this subtree. */
  maxGap = 0;
  left: IovaNode | null = null;
  right: IovaNode | null = null;
  parent: IovaNode | null = null;
  /** Heap priority (min-heap). */
  pri = 0;
  /** True while the range is in the tree. */
  inTree = false;

  constructor(pfnLo: number, pfnHi: number) {
    this.pfnLo = pfnLo;
    this.pfnHi = pfnHi;
  }
}

/** Where a fitting range was found: the node it goes below and its first pfn. */
export interface FitResult {
  node: IovaNode | null;
  newPfn: number;
}

function update(n: IovaNode): void {
  let m = n.gap;
  const l = n.left;
  const r = n.right;
  if (l !== null && l.maxGap > m) m = l.maxGap;
  if (r !== null && r.maxGap > m) m = r.maxGap;
  n.maxGap = m;
}

/** A balanced (treap) ordered set of disjoint ranges, augmented with free gaps. */
export class IovaTree {
  root: IovaNode | null = null;
  /** Nodes in the tree. */
  size = 0;
  private seed = 0x2545f491;
  // search state (no closures in the hot path)
  private sSize = 0;
  private sAlign = 1;
  private sLimit = 0;
  private sLow = 0;
  private sBound = 0;

  /** The node containing `pfn`, or null (Linux `private_find_iova`). */
  findContaining(pfn: number): IovaNode | null {
    let n = this.root;
    while (n !== null) {
      if (pfn < n.pfnLo) n = n.left;
      else if (pfn > n.pfnHi) n = n.right;
      else return n;
    }
    return null;
  }

  /** The lowest node whose `pfnHi >= pfn` (equivalently the first node not entirely below pfn). */
  lowerBoundHi(pfn: number): IovaNode | null {
    let n = this.root;
    let best: IovaNode | null = null;
    while (n !== null) {
      if (n.pfnHi >= pfn) {
        best = n;
        n = n.left;
      } else n = n.right;
    }
    return best;
  }

  /** The lowest node whose `pfnLo >= pfn` (Linux `iova_find_limit`). */
  lowerBoundLo(pfn: number): IovaNode | null {
    let n = this.root;
    let best: IovaNode | null = null;
    while (n !== null) {
      if (n.pfnLo >= pfn) {
        best = n;
        n = n.left;
      } else n = n.right;
    }
    return best;
  }

  /** The lowest node. */
  first(): IovaNode | null {
    let n = this.root;
    if (n === null) return null;
    while (n.left !== null) n = n.left;
    return n;
  }

  /** In-order successor (Linux `rb_next`). */
  next(node: IovaNode): IovaNode | null {
    let n = node.right;
    if (n !== null) {
      while (n.left !== null) n = n.left;
      return n;
    }
    let c = node;
    let p = node.parent;
    while (p !== null && p.right === c) {
      c = p;
      p = p.parent;
    }
    return p;
  }

  /** In-order predecessor (Linux `rb_prev`). */
  prev(node: IovaNode): IovaNode | null {
    let n = node.left;
    if (n !== null) {
      while (n.right !== null) n = n.right;
      return n;
    }
    let c = node;
    let p = node.parent;
    while (p !== null && p.left === c) {
      c = p;
      p = p.parent;
    }
    return p;
  }

  /** Inserts a node that overlaps no other. */
  insert(node: IovaNode): void {
    node.left = null;
    node.right = null;
    node.parent = null;
    node.pri = this.random();
    let p: IovaNode | null = null;
    let n = this.root;
    let goLeft = false;
    while (n !== null) {
      p = n;
      goLeft = node.pfnLo < n.pfnLo;
      n = goLeft ? n.left : n.right;
    }
    node.parent = p;
    if (p === null) this.root = node;
    else if (goLeft) p.left = node;
    else p.right = node;
    node.inTree = true;
    this.size++;
    const pred = this.prev(node);
    node.gap = node.pfnLo - (pred === null ? 0 : pred.pfnHi + 1);
    node.maxGap = node.gap;
    this.pullUp(node);
    const succ = this.next(node);
    if (succ !== null) {
      succ.gap = succ.pfnLo - node.pfnHi - 1;
      this.pullUp(succ);
    }
    // Restore the heap order by rotating the new leaf up.
    while (node.parent !== null && node.pri < node.parent.pri) {
      if (node.parent.left === node) this.rotateRight(node.parent);
      else this.rotateLeft(node.parent);
    }
  }

  /** Removes a node that is in the tree. */
  remove(node: IovaNode): void {
    const pred = this.prev(node);
    const succ = this.next(node);
    // Rotate the node down until it has at most one child.
    while (node.left !== null && node.right !== null) {
      if (node.left.pri < node.right.pri) this.rotateRight(node);
      else this.rotateLeft(node);
    }
    const child = node.left ?? node.right;
    const p = node.parent;
    if (child !== null) child.parent = p;
    if (p === null) this.root = child;
    else if (p.left === node) p.left = child;
    else p.right = child;
    node.left = null;
    node.right = null;
    node.parent = null;
    node.inTree = false;
    this.size--;
    if (p !== null) this.pullUp(p);
    if (succ !== null) {
      succ.gap = succ.pfnLo - (pred === null ? 0 : pred.pfnHi + 1);
      this.pullUp(succ);
    }
  }

  /** Lowers a node's start into the free gap below it (Linux `__adjust_overlap_range`). */
  setLo(node: IovaNode, lo: number): void {
    node.gap -= node.pfnLo - lo;
    node.pfnLo = lo;
    this.pullUp(node);
  }

  /**
   * The top-down first fit of iova.c's `__alloc_and_insert_iova_range`: the highest node N at
   * or below `bound` (in order) such that a `size`-page block aligned to `align` fits between
   * N's predecessor and min(N.pfnLo, limit) (exclusive), with the block's start at or above
   * `low`. Writes the node and the block's first pfn into `out` (node null when nothing fits).
   */
  searchFit(
    bound: IovaNode,
    limit: number,
    size: number,
    align: number,
    low: number,
    out: FitResult,
  ): void {
    this.sSize = size;
    this.sAlign = align;
    this.sLimit = limit;
    this.sLow = low;
    this.sBound = bound.pfnLo;
    out.node = null;
    out.newPfn = 0;
    const n = this.root === null ? null : this.rec(this.root);
    if (n === null) return;
    const h = n.pfnLo < limit ? n.pfnLo : limit;
    const np = h - size - ((h - size) % align);
    if (np < low) return;
    out.node = n;
    out.newPfn = np;
  }

  private rec(n: IovaNode): IovaNode | null {
    if (n.maxGap < this.sSize) return null;
    if (n.pfnLo > this.sBound) return n.left === null ? null : this.rec(n.left);
    if (n.right !== null) {
      const r = this.rec(n.right);
      if (r !== null) return r;
    }
    // Candidates only decrease going down: below `low` nothing here or further left can fit.
    if (n.pfnLo - this.sSize < this.sLow) return null;
    if (n.gap >= this.sSize) {
      const h = n.pfnLo < this.sLimit ? n.pfnLo : this.sLimit;
      if (h >= this.sSize) {
        const np = h - this.sSize - ((h - this.sSize) % this.sAlign);
        const predHi = n.pfnLo - n.gap - 1;
        if (np > predHi) return n;
      }
    }
    return n.left === null ? null : this.rec(n.left);
  }

  /** All nodes in order (for tests and dumps). */
  toArray(): IovaNode[] {
    const out: IovaNode[] = [];
    for (let n = this.first(); n !== null; n = this.next(n)) out.push(n);
    return out;
  }

  private pullUp(n: IovaNode | null): void {
    while (n !== null) {
      update(n);
      n = n.parent;
    }
  }

  private replaceChild(p: IovaNode | null, oldC: IovaNode, newC: IovaNode): void {
    if (p === null) this.root = newC;
    else if (p.left === oldC) p.left = newC;
    else p.right = newC;
  }

  private rotateLeft(x: IovaNode): void {
    const y = x.right as IovaNode;
    x.right = y.left;
    if (y.left !== null) y.left.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.left = x;
    x.parent = y;
    update(x);
    update(y);
  }

  private rotateRight(x: IovaNode): void {
    const y = x.left as IovaNode;
    x.left = y.right;
    if (y.right !== null) y.right.parent = x;
    y.parent = x.parent;
    this.replaceChild(x.parent, x, y);
    y.right = x;
    x.parent = y;
    update(x);
    update(y);
  }

  private random(): number {
    // xorshift32 on a 32-bit state (not an address)
    /* eslint-disable no-bitwise -- 32-bit PRNG state */
    let x = this.seed;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.seed = x >>> 0;
    /* eslint-enable no-bitwise */
    return this.seed;
  }
}
