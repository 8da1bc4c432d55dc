/**
 * Decoders for what a command's data pointer leads to, for people (the trace page's tables):
 * SGL descriptors (NVMe Base 2.2 §4.3.2), in SGL1 of a command or in a segment in memory, and
 * the entries of a PRP list (NVMe Base 2.2 §4.3.1), with which of them carry data and which
 * point at the next list page, worked out as the controller does (QEMU `nvme_map_prp`; here
 * ctrl/walker.ts `nvmeMapPrp`).
 *
 * The decoders read bytes and name what they find; they do not validate (an invalid descriptor
 * is decoded and named, the walker is what rejects it).
 */
import { fastMod, getU32 } from "@dmasim/bvec";
import { NvmeError } from "../errors.ts";
import { getAddr64 } from "./commands.ts";
import {
  type DwordAt,
  type NvmeField,
  addrText,
  bitField,
  dwordField,
  hexH,
  plural,
  qwordField,
} from "./decode-field.ts";
import { NVME_SGL_DESC_SIZE, NVME_SGL_SUBTYPE, NVME_SGL_TYPE, SGL_DESC } from "./sgl.ts";

// ---------------------------------------------------------------------------------------------
// SGL descriptors

/** SGL Descriptor Type names (NVMe Base 2.2 §4.3.2, SGL Descriptor Type figure). */
const SGL_TYPE_NAMES: Readonly<Record<number, string>> = {
  [NVME_SGL_TYPE.DATA]: "Data Block",
  [NVME_SGL_TYPE.BIT_BUCKET]: "Bit Bucket",
  [NVME_SGL_TYPE.SEGMENT]: "Segment",
  [NVME_SGL_TYPE.LAST_SEGMENT]: "Last Segment",
  [NVME_SGL_TYPE.KEYED_DATA]: "Keyed Data Block",
  [NVME_SGL_TYPE.TRANSPORT_DATA]: "Transport Data Block",
  0xf: "Vendor Specific",
};

/** The name of SGL descriptor type `t` (6h to Eh are reserved). */
export function sglTypeName(t: number): string {
  return SGL_TYPE_NAMES[t] ?? "Reserved";
}

/**
 * The name of SGL descriptor sub type `s` (NVMe Base 2.2 §4.3.2, SGL Descriptor Sub Type
 * figure): 0h Address, 1h Offset, Ah to Fh transport specific, the rest reserved.
 */
export function sglSubtypeName(s: number): string {
  if (s === NVME_SGL_SUBTYPE.ADDRESS) return "Address";
  if (s === NVME_SGL_SUBTYPE.OFFSET) return "Offset";
  return s >= 0xa ? "Transport Specific" : "Reserved";
}

/** One SGL descriptor of a segment, decoded. */
export interface SglDescriptorView {
  /** Its position in the segment (0-based). */
  readonly index: number;
  /** Its first byte within the segment's bytes. */
  readonly offset: number;
  /** SGL Descriptor Type (byte 15 bits 7:4). */
  readonly type: number;
  readonly typeName: string;
  /** SGL Descriptor Sub Type (byte 15 bits 3:0). */
  readonly subtype: number;
  readonly subtypeName: string;
  /** Bytes 07:00 read as an address, whatever the type (-1 at or above 2^53). */
  readonly addr: number;
  /** The Length field: bytes 10:08 of a Keyed Data Block, bytes 11:08 of any other type. */
  readonly len: number;
  /** The descriptor's fields; offsets are within the segment's bytes. */
  readonly fields: NvmeField[];
}

/** How a descriptor's dwords are named where it sits: "CDW6".."CDW9" in a command, "DW0".."DW3". */
export interface DescriptorNames {
  /** The first byte of the descriptor within the structure. */
  readonly at: number;
  /** The name of the descriptor's dword `i` (0..3), or of the pair `i`-`i + 1` when `pair`. */
  dword(i: number, pair?: boolean): string;
  /** Prefix of the field names ("SGL1." in a command, "" in a segment). */
  readonly prefix: string;
}

/** A descriptor's dwords named DW0..DW3 (in a segment). */
export function segmentNames(at: number): DescriptorNames {
  return { at, prefix: "", dword: (i, pair) => (pair === true ? `DW${i}-${i + 1}` : `DW${i}`) };
}

/** The Length field's meaning for a descriptor of type `t`. */
function lenText(t: number): (v: number) => string {
  if (t === NVME_SGL_TYPE.SEGMENT || t === NVME_SGL_TYPE.LAST_SEGMENT)
    return (v) =>
      fastMod(v, NVME_SGL_DESC_SIZE) === 0
        ? `${plural(v, "byte")}: ${plural(v / NVME_SGL_DESC_SIZE, "descriptor")} in the ${t === NVME_SGL_TYPE.LAST_SEGMENT ? "last" : "next"} segment`
        : `${plural(v, "byte")} (not a multiple of 16)`;
  if (t === NVME_SGL_TYPE.BIT_BUCKET)
    return (v) => `${plural(v, "byte")} to discard (controller to host transfers)`;
  return (v) => plural(v, "byte");
}

/** The Address field's name in words for a descriptor of type `t` and sub type `s`. */
function addrLabel(t: number, s: number): string {
  const what =
    t === NVME_SGL_TYPE.SEGMENT || t === NVME_SGL_TYPE.LAST_SEGMENT
      ? "Address of the next segment"
      : "Address";
  return s === NVME_SGL_SUBTYPE.OFFSET ? `${what} (an offset: Offset sub type)` : what;
}

/**
 * The fields of the SGL descriptor at `n.at` of `b` (NVMe Base 2.2 §4.3.2: the Data Block,
 * Bit Bucket, Segment, Last Segment, Keyed Data Block and Transport Data Block descriptor
 * figures; bytes 14:00 of a reserved or vendor specific type are shown as they are), with its
 * type, sub type, address and length.
 */
export function sglDescriptorFields(
  b: Uint8Array,
  n: DescriptorNames,
): {
  type: number;
  subtype: number;
  addr: number;
  len: number;
  fields: NvmeField[];
} {
  const at = n.at;
  const id = b[at + SGL_DESC.TYPE] as number;
  const type = Math.floor(id / 16);
  const subtype = id % 16;
  const p = n.prefix;
  const dw = (i: number): DwordAt => ({ dword: n.dword(i), at: at + 4 * i });
  const fields: NvmeField[] = [];
  const keyed = type === NVME_SGL_TYPE.KEYED_DATA;
  const known = SGL_TYPE_NAMES[type] !== undefined && type !== 0xf;
  const hasAddr =
    keyed ||
    type === NVME_SGL_TYPE.DATA ||
    type === NVME_SGL_TYPE.SEGMENT ||
    type === NVME_SGL_TYPE.LAST_SEGMENT;
  if (!known) {
    // Reserved and vendor specific types: bytes 14:00 are Descriptor Type Specific.
    const spec = "Descriptor Type Specific";
    fields.push(qwordField(b, at, n.dword(0, true), `${p}DTS`, spec, addrText));
    fields.push(dwordField(b, dw(2), `${p}DTS`, spec, (v) => hexH(v, 8)));
    fields.push(bitField(b, dw(3), 23, 0, `${p}DTS`, spec, (v) => hexH(v, 6)));
  } else {
    if (hasAddr)
      fields.push(
        qwordField(b, at, n.dword(0, true), `${p}ADDR`, addrLabel(type, subtype), addrText),
      );
    if (keyed) {
      fields.push(bitField(b, dw(2), 23, 0, `${p}LEN`, "Length", lenText(type)));
      // The Key is bytes 14:11: the top byte of DW2 and the low three bytes of DW3.
      const key = keyOf(b, at);
      fields.push({
        name: `${p}KEY`,
        label: "Key",
        offset: at + 11,
        size: 4,
        bits: "55:24",
        dword: n.dword(2, true),
        value: key,
        text: hexH(key, 8),
      });
    } else fields.push(dwordField(b, dw(2), `${p}LEN`, "Length", lenText(type)));
  }
  fields.push(
    bitField(
      b,
      dw(3),
      31,
      28,
      `${p}TYPE`,
      "SGL Descriptor Type",
      (v) => `${hexH(v)} ${sglTypeName(v)}`,
    ),
    bitField(
      b,
      dw(3),
      27,
      24,
      `${p}SUBTYPE`,
      "SGL Descriptor Sub Type",
      (v) => `${hexH(v)} ${sglSubtypeName(v)}`,
    ),
  );
  const len = keyed ? getU32(b, at + SGL_DESC.LEN) % 2 ** 24 : getU32(b, at + SGL_DESC.LEN);
  return { type, subtype, addr: getAddr64(b, at + SGL_DESC.ADDR), len, fields };
}

/** The 32-bit Key of a Keyed Data Block descriptor (bytes 14:11). */
function keyOf(b: Uint8Array, at: number): number {
  return (
    (b[at + 11] as number) +
    (b[at + 12] as number) * 0x100 +
    (b[at + 13] as number) * 0x10000 +
    (b[at + 14] as number) * 0x1000000
  );
}

/**
 * Decodes an SGL segment: `bytes` holds whole 16-byte descriptors (throws EINVAL otherwise).
 * Every descriptor is decoded by its type, including one a controller would reject.
 */
export function decodeSglSegment(bytes: Uint8Array): SglDescriptorView[] {
  if (fastMod(bytes.length, NVME_SGL_DESC_SIZE) !== 0)
    throw new NvmeError(
      "EINVAL",
      `an SGL segment is whole 16-byte descriptors; ${bytes.length} bytes given`,
    );
  const out: SglDescriptorView[] = [];
  for (let i = 0; i * NVME_SGL_DESC_SIZE < bytes.length; i++) {
    const offset = i * NVME_SGL_DESC_SIZE;
    const d = sglDescriptorFields(bytes, segmentNames(offset));
    out.push({
      index: i,
      offset,
      type: d.type,
      typeName: sglTypeName(d.type),
      subtype: d.subtype,
      subtypeName: sglSubtypeName(d.subtype),
      addr: d.addr,
      len: d.len,
      fields: d.fields,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// PRP lists

/** One entry of a PRP list, decoded. */
export interface PrpEntryView {
  /** The list page it sits in (0-based, in chain order). */
  readonly page: number;
  /** Its slot in that page's bytes (0-based). */
  readonly index: number;
  /** Its first byte within that page's bytes. */
  readonly offset: number;
  /** The entry's value (-1 at or above 2^53). */
  readonly addr: number;
  /** A data page, or the pointer to the next list page. */
  readonly role: "data" | "list-pointer";
  /** Bytes of data the entry covers (0 for a pointer). */
  readonly len: number;
}

/** PRP entries are 8 bytes (NVMe Base 2.2 §4.3.1). */
const PRP_ENTRY_SIZE = 8;
/** The smallest memory page (CC.MPS = 0). */
const MIN_PAGE_SIZE = 4096;

/**
 * Decodes the PRP list of a command whose PRP1 is `prp1` and whose transfer is `length` bytes,
 * with memory pages of `pageSize` bytes (CC.MPS), as the controller reads it (QEMU
 * `nvme_map_prp`, NVMe Base 2.2 §4.3.1): PRP1 covers up to the end of its page; when more than
 * one page remains, PRP2 points at the list; each entry covers one page (the last one what is
 * left), and the last slot of a list page is a pointer to the next list page while more than
 * one page remains after it.
 *
 * `pages` are the list pages in chain order. A page's bytes run from the first slot the
 * controller reads (PRP2 for the first page, which may point inside a page; the pointer's
 * target for the next) to the end of that memory page, so a page's last 8 bytes are its last
 * slot; the page that ends the list may stop after its last used entry. When the list goes on
 * past the pages given, the result ends with the pointer to the first page not given (a caller
 * can read that page and decode again); pages after the end of the list are not read. An empty
 * result means the command needs no list (PRP2 is the second data page or unused).
 *
 * The entries are named, not checked: an entry with an offset (which the controller rejects
 * with PRP Offset Invalid) is decoded like any other.
 */
export function decodePrpList(
  pages: readonly Uint8Array[],
  prp1: number,
  length: number,
  pageSize: number,
): PrpEntryView[] {
  if (
    !Number.isInteger(pageSize) ||
    pageSize < MIN_PAGE_SIZE ||
    2 ** Math.round(Math.log2(pageSize)) !== pageSize
  )
    throw new NvmeError(
      "EINVAL",
      `a memory page is a power of two of 4 KiB or more, not ${pageSize}`,
    );
  if (!Number.isSafeInteger(prp1) || prp1 < 0)
    throw new NvmeError("EINVAL", `PRP1 must be an address below 2^53, not ${prp1}`);
  if (!Number.isSafeInteger(length) || length <= 0)
    throw new NvmeError("EINVAL", `a transfer length must be a positive integer, not ${length}`);
  let rem = length - Math.min(length, pageSize - fastMod(prp1, pageSize));
  const out: PrpEntryView[] = [];
  if (rem <= pageSize) return out;
  for (let page = 0; page < pages.length; page++) {
    const bytes = pages[page] as Uint8Array;
    if (bytes.length > pageSize)
      throw new NvmeError(
        "EINVAL",
        `PRP list page ${page} has ${bytes.length} bytes, more than a ${pageSize}-byte page`,
      );
    const slots = Math.floor(bytes.length / PRP_ENTRY_SIZE);
    if (slots === 0)
      throw new NvmeError("EINVAL", `PRP list page ${page} holds no entry (${bytes.length} bytes)`);
    for (let index = 0; index < slots; index++) {
      const offset = index * PRP_ENTRY_SIZE;
      const addr = getAddr64(bytes, offset);
      if (index === slots - 1 && rem > pageSize) {
        out.push({ page, index, offset, addr, role: "list-pointer", len: 0 });
        break;
      }
      const len = Math.min(rem, pageSize);
      out.push({ page, index, offset, addr, role: "data", len });
      rem -= len;
      if (rem === 0) return out;
    }
  }
  return out;
}
