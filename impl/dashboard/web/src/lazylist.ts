// A lazily rendered list of blocks (stacks or author groups) of any height:
// blocks are packed into chunks; only the chunks near the viewport hold DOM,
// the others are empty placeholders of their measured (else estimated)
// height. At 50,000 branches the page holds a few hundred empty chunks and the
// cards of a few chunks, never 50,000 cards.

export interface Block {
  /** Unique within the list; kept in the element's data-key. */
  key: string;
  /** Cards in the block (chunks hold about maxWeight of them). */
  weight: number;
  /** Height in pixels before it was ever rendered. */
  estimate: number;
  render: () => HTMLElement;
}

interface Chunk {
  key: string;
  blocks: Block[];
  el: HTMLDivElement;
  rendered: boolean;
  estimate: number;
}

export interface LazyListOptions {
  /** About how many cards a chunk holds. */
  maxWeight: number;
  /** How far beyond the viewport chunks are rendered, in px. */
  margin: number;
  /** Called after chunks were rendered (e.g. to refresh relative times). */
  onRender?: (el: HTMLElement) => void;
}

export class LazyList {
  readonly el: HTMLDivElement;
  private chunks: Chunk[] = [];
  private indexOfEl = new Map<Element, number>();
  private heights = new Map<string, number>();
  private io: IntersectionObserver;
  private opts: LazyListOptions;

  constructor(el: HTMLDivElement, opts: LazyListOptions) {
    this.el = el;
    this.opts = opts;
    this.io = new IntersectionObserver((entries) => this.onIntersect(entries), {
      rootMargin: `${opts.margin}px 0px ${opts.margin}px 0px`,
    });
  }

  // chunkOf finds the chunk of a block by key (rare: anchors, folding).
  private chunkOf(key: string): number | undefined {
    for (let i = 0; i < this.chunks.length; i++) {
      const c = this.chunks[i];
      if (c && c.blocks.some((b) => b.key === key)) return i;
    }
    return undefined;
  }

  /**
   * Replaces the blocks. Chunks are rendered as they come near the viewport;
   * the first `eager` chunks are rendered at once (the first stacks show
   * without waiting for an observer round).
   */
  setBlocks(blocks: Block[], eager = 1): void {
    this.io.disconnect();
    const chunks: Chunk[] = [];
    let cur: Block[] = [];
    let weight = 0;
    const flush = () => {
      if (cur.length === 0) return;
      const first = cur[0]?.key ?? "";
      const last = cur[cur.length - 1]?.key ?? "";
      const key = `${first}\u0001${cur.length}\u0001${last}`;
      const el = document.createElement("div");
      el.className = "chunk";
      const estimate = cur.reduce((a, b) => a + b.estimate, 0);
      el.style.height = `${this.heights.get(key) ?? estimate}px`;
      chunks.push({ key, blocks: cur, el, rendered: false, estimate });
      cur = [];
      weight = 0;
    };
    for (const b of blocks) {
      if (cur.length > 0 && weight + b.weight > this.opts.maxWeight) flush();
      cur.push(b);
      weight += b.weight;
    }
    flush();
    this.chunks = chunks;
    this.indexOfEl = new Map(chunks.map((c, i) => [c.el, i]));
    this.el.replaceChildren(...chunks.map((c) => c.el));
    for (let i = 0; i < Math.min(eager, chunks.length); i++) this.render(i);
    for (const c of chunks) this.io.observe(c.el);
  }

  /** Renders chunk i now (when it is not). */
  render(i: number): void {
    const c = this.chunks[i];
    if (!c || c.rendered) return;
    c.el.replaceChildren(...c.blocks.map((b) => this.renderBlock(b)));
    c.el.style.height = "";
    c.rendered = true;
    this.opts.onRender?.(c.el);
  }

  private renderBlock(b: Block): HTMLElement {
    const el = b.render();
    el.dataset["key"] = b.key;
    return el;
  }

  private unrender(c: Chunk): void {
    if (!c.rendered) return;
    // Keep the chunk that holds the focus.
    if (c.el.contains(document.activeElement)) return;
    const height = c.el.getBoundingClientRect().height;
    this.heights.set(c.key, height);
    c.el.style.height = `${height}px`;
    c.el.replaceChildren();
    c.rendered = false;
  }

  private onIntersect(entries: IntersectionObserverEntry[]): void {
    for (const e of entries) {
      const i = this.indexOfEl.get(e.target);
      if (i === undefined) continue;
      const c = this.chunks[i];
      if (!c) continue;
      if (e.isIntersecting) this.render(i);
      else this.unrender(c);
    }
  }

  /** Re-renders the rendered chunks (e.g. the HEAD marker moved), keeping the focus. */
  refresh(): void {
    const focus = focusKey();
    for (const c of this.chunks) {
      if (!c.rendered) continue;
      c.el.replaceChildren(...c.blocks.map((b) => this.renderBlock(b)));
      this.opts.onRender?.(c.el);
    }
    restoreFocus(this.el, focus);
  }

  /** Re-renders the chunk of one block (a stack was folded), keeping the focus. */
  refreshBlock(key: string): void {
    const i = this.chunkOf(key);
    if (i === undefined) return;
    const c = this.chunks[i];
    if (!c || !c.rendered) return;
    const focus = focusKey();
    c.el.replaceChildren(...c.blocks.map((b) => this.renderBlock(b)));
    this.opts.onRender?.(c.el);
    restoreFocus(c.el, focus);
  }

  /** The element of a block, rendering its chunk when needed. */
  elementOf(key: string): HTMLElement | null {
    const i = this.chunkOf(key);
    if (i === undefined) return null;
    this.render(i);
    const c = this.chunks[i];
    if (!c) return null;
    for (const child of c.el.children) {
      if (child instanceof HTMLElement && child.dataset["key"] === key) return child;
    }
    return null;
  }

  /** The key of the first block whose bottom is below y (viewport px), with its top. */
  anchor(y: number): { key: string; top: number } | null {
    for (const c of this.chunks) {
      if (!c.rendered) continue;
      const r = c.el.getBoundingClientRect();
      if (r.bottom <= y) continue;
      for (const child of c.el.children) {
        if (!(child instanceof HTMLElement)) continue;
        const cr = child.getBoundingClientRect();
        if (cr.bottom > y) return { key: child.dataset["key"] ?? "", top: cr.top };
      }
    }
    return null;
  }

  /** Renders the chunk after the one holding el (keyboard navigation past the rendered part). */
  renderAfter(el: Element): boolean {
    for (let i = 0; i < this.chunks.length; i++) {
      const c = this.chunks[i];
      if (c && c.el.contains(el)) {
        const next = this.chunks[i + 1];
        if (!next || next.rendered) return false;
        this.render(i + 1);
        return true;
      }
    }
    return false;
  }

  /** Renders the chunk before the one holding el. */
  renderBefore(el: Element): boolean {
    for (let i = 0; i < this.chunks.length; i++) {
      const c = this.chunks[i];
      if (c && c.el.contains(el)) {
        const prev = this.chunks[i - 1];
        if (!prev || prev.rendered) return false;
        this.render(i - 1);
        return true;
      }
    }
    return false;
  }

  destroy(): void {
    this.io.disconnect();
    this.chunks = [];
    this.indexOfEl.clear();
  }
}

/** The data-focus-key of the focused element, when it has one. */
export function focusKey(): string | null {
  const a = document.activeElement;
  return a instanceof HTMLElement && a.dataset["focusKey"] !== undefined ? a.dataset["focusKey"] : null;
}

/** Focuses the element under root whose data-focus-key is key (no CSS escaping of hostile names needed). */
export function restoreFocus(root: ParentNode, key: string | null): void {
  if (key === null) return;
  if (focusKey() === key && document.activeElement && document.activeElement.isConnected) return;
  for (const el of root.querySelectorAll<HTMLElement>("[data-focus-key]")) {
    if (el.dataset["focusKey"] === key) {
      el.focus({ preventScroll: true });
      return;
    }
  }
}
