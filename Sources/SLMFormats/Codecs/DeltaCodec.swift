// Codec 3: a float chunk stored as the element-wise difference against base bytes at the same
// element positions, named by content (base chunk ids and an offset). Format.md, section 5.

import Foundation

/// What a delta record says about its base, parsed and bounds-checked before anything is read.
public struct DeltaHeader: Equatable, Sendable {
    /// Bytes per element of the tensor the chunk lies in.
    public var elementSize: Int
    /// The planes transform a full record of this chunk uses (re-encoding after a rebuild).
    public var transform: FloatLayout.Transform
    /// The byte of an element the chunk starts at.
    public var phase: Int
    var flags: UInt8
    /// Byte of the first base chunk that lines up with the chunk's first byte.
    public var baseOffset: UInt32
    /// Stored length of the full record the writer compared the delta against (0: unknown);
    /// informational, so `diff` can size a full record without re-encoding the chunk.
    public var fullLength: UInt32
    /// The base chunks, in order, whose bytes the deltas apply to.
    public var bases: [ChunkRef]
    /// Where head bytes start in the payload.
    var bodyStart: Int

    /// Most base chunks one delta may name: reading a chunk stays a bounded number of reads.
    public static let maxBases = 16

    /// The planes layout of the chunk's full record (codec 2), for re-encoding it once rebuilt.
    public var fullLayout: FloatLayout { FloatLayout(elementSize: elementSize, transform: transform, phase: phase) }
}

/// Codec 3 (Format.md section 5): tensor differences against named base chunks, encoded and decoded.
package enum DeltaCodec {
    /// Bytes of a delta payload before its base list.
    package static let fixedHeaderSize = 16
    /// Bytes of one base entry (id and raw length).
    package static let baseEntrySize = 20
    /// A plane is tried with zstd unless its bytes look random.
    static let entropyLimit = 7.6

    /// Flags bit 7: the planes hold only the elements whose difference is not zero, after a
    /// presence map (Format.md, section 5). Bit 6: that map is a zstd frame.
    static let sparseFlag: UInt8 = 0x80
    static let sparseMapFrameFlag: UInt8 = 0x40
    /// Below this share of changed elements the sparse layout is written. Where most weights keep
    /// their value (bf16 after a small fine-tune), zstd spends a bit or more on every zero byte of
    /// a plane, while the presence map costs about the entropy of the changed/unchanged pattern.
    static let sparseShare = 2.0 / 3.0

    /// Encodes `new` against `base` (the same number of bytes, element-aligned alike).
    package static func encode(new: UnsafeRawBufferPointer, base: UnsafeRawBufferPointer, layout: FloatLayout,
                       bases: [ChunkRef], baseOffset: UInt32, fullLength: UInt32 = 0) -> [UInt8] {
        let e = layout.elementSize, phase = layout.phase
        precondition(new.count == base.count && (e == 2 || e == 4) && phase < e && !bases.isEmpty && bases.count <= DeltaHeader.maxBases)
        let n = new.count
        let lead = min(n, (e - phase) % e)
        let count = (n - lead) / e
        let tail = n - lead - count * e
        let dense = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count * e))
        defer { dense.deallocate() }
        let changed = differencePlanes(new.baseAddress! + lead, base.baseAddress! + lead, count: count, elementSize: e, into: dense)
        var flags: UInt8 = 0
        var map: [UInt8]? = nil
        var planeCount = count
        var planes = dense
        let sparse = count > 0 && Double(changed) < Double(count) * sparseShare
        let compacted = UnsafeMutablePointer<UInt8>.allocate(capacity: sparse ? (changed + 1) * e : 1)
        defer { compacted.deallocate() }
        if sparse {
            let bits = compact(dense, count: count, elementSize: e, changed: changed, into: compacted)
            let frame = bits.withUnsafeBytes { compressed($0) }
            flags |= sparseFlag | (frame == nil ? 0 : sparseMapFrameFlag)
            map = frame ?? bits
            planeCount = changed
            planes = compacted
        }
        var frames: [[UInt8]?] = []
        for j in 0..<e {
            let frame = compressed(UnsafeRawBufferPointer(start: planes + j * planeCount, count: planeCount))
            if frame != nil { flags |= 1 << UInt8(j) }
            frames.append(frame)
        }
        var w = ByteWriter(capacity: fixedHeaderSize + bases.count * baseEntrySize + lead + tail + 4 * (e + 1) + (map?.count ?? 0)
                           + frames.reduce(0) { $0 + ($1?.count ?? planeCount) })
        w.u8(UInt8(e))
        w.u8(layout.transform.rawValue)
        w.u8(UInt8(phase))
        w.u8(flags)
        w.u8(UInt8(bases.count))
        w.raw([0, 0, 0])
        w.u32(baseOffset)
        w.u32(fullLength)
        for b in bases { w.raw(b.id.canonicalBytes); w.u32(b.rawLength) }
        w.raw(UnsafeRawBufferPointer(start: new.baseAddress!, count: lead))
        w.raw(UnsafeRawBufferPointer(start: new.baseAddress! + lead + count * e, count: tail))
        if let map { w.u32(UInt32(map.count)); w.raw(map) }
        for j in 0..<e {
            if let f = frames[j] {
                w.u32(UInt32(f.count)); w.raw(f)
            } else {
                w.u32(UInt32(planeCount)); w.raw(UnsafeRawBufferPointer(start: planes + j * planeCount, count: planeCount))
            }
        }
        return w.bytes
    }

    /// A plane (or presence map) as a zstd frame when its bytes look compressible and the frame
    /// saves at least 5%; nil keeps it raw.
    static func compressed(_ plane: UnsafeRawBufferPointer) -> [UInt8]? {
        guard plane.count > 0, PlaneCodec.entropy(plane, sample: 8192) < entropyLimit,
              let frame = ZstdCodec.planeFrame(plane, kind: .differences), Double(frame.count) < Double(plane.count) * 0.95 else { return nil }
        return frame
    }

    /// Writes the zigzag codes of `count` elements as `e` planes (plane 0 the high byte) and
    /// returns how many are not zero.
    static func differencePlanes(_ nb: UnsafeRawPointer, _ bb: UnsafeRawPointer, count: Int, elementSize e: Int,
                                 into planes: UnsafeMutablePointer<UInt8>) -> Int {
        if e == 2 {
            let p0 = planes, p1 = planes + count
            var changed = differenceLanes16(nb, bb, count: count, p0: p0, p1: p1)
            for i in (count - count % lanes16)..<count {
                let z = zigzag16(ordered16(nb.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
                                 &- ordered16(bb.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)))
                p0[i] = UInt8(truncatingIfNeeded: z >> 8)
                p1[i] = UInt8(truncatingIfNeeded: z)
                changed &+= Int(truncatingIfNeeded: (z | (0 &- z)) >> 15)  // 1 unless z is 0, without a branch
            }
            return changed
        } else {
            let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
            var changed = differenceLanes32(nb, bb, count: count, planes: planes)
            for i in (count - count % lanes32)..<count {
                let z = zigzag32(ordered32(nb.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))
                                 &- ordered32(bb.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)))
                p0[i] = UInt8(truncatingIfNeeded: z >> 24)
                p1[i] = UInt8(truncatingIfNeeded: z >> 16)
                p2[i] = UInt8(truncatingIfNeeded: z >> 8)
                p3[i] = UInt8(truncatingIfNeeded: z)
                changed &+= Int(truncatingIfNeeded: (z | (0 &- z)) >> 31)
            }
            return changed
        }
    }

    /// The presence map (bit i mod 8 of byte i / 8 set when element i changed) and, in `out`,
    /// the codes of the changed elements only, plane j starting at `j * changed`.
    static func compact(_ planes: UnsafePointer<UInt8>, count: Int, elementSize e: Int, changed: Int,
                        into out: UnsafeMutablePointer<UInt8>) -> [UInt8] {
        var map = [UInt8](repeating: 0, count: (count + 7) / 8)
        var k = 0
        map.withUnsafeMutableBufferPointer { m in
            // Branch-free: every code is written at k, and k only moves past the changed ones
            // (out has one spare byte per plane for the last write).
            if e == 2 {
                let p0 = planes, p1 = planes + count, o0 = out, o1 = out + changed + 1
                for i in 0..<count {
                    let a = p0[i], b = p1[i]
                    o0[k] = a; o1[k] = b
                    let nz = (a | b) != 0 ? 1 : 0
                    m[i >> 3] |= UInt8(nz) << UInt8(i & 7)
                    k += nz
                }
                memmove(out + changed, o1, changed)  // the regions overlap
            } else {
                let stride = changed + 1
                for i in 0..<count {
                    let a = planes[i], b = planes[count + i], c = planes[2 * count + i], d = planes[3 * count + i]
                    out[k] = a; out[stride + k] = b; out[2 * stride + k] = c; out[3 * stride + k] = d
                    let nz = (a | b | c | d) != 0 ? 1 : 0
                    m[i >> 3] |= UInt8(nz) << UInt8(i & 7)
                    k += nz
                }
                for j in 1..<4 { memmove(out + j * changed, out + j * stride, changed) }  // overlapping
            }
        }
        precondition(k == changed)
        return map
    }

    /// Parses and checks the header of a delta payload for a chunk of `n` raw bytes: element
    /// size, phase, base count, and that the bases cover exactly what the chunk needs.
    package static func header(_ payload: UnsafeRawBufferPointer, rawLength n: Int, what: String) throws -> DeltaHeader {
        func bad(_ m: String) -> SLMError { .damaged(path: what, problem: "delta codec: \(m)") }
        guard payload.count >= fixedHeaderSize else { throw bad("payload shorter than its header") }
        let e = Int(payload[0]), phase = Int(payload[2]), flags = payload[3], k = Int(payload[4])
        guard e == 2 || e == 4 else { throw bad("element size \(e) (must be 2 or 4)") }
        guard let transform = FloatLayout.Transform(rawValue: payload[1]) else { throw bad("transform \(payload[1])") }
        guard payload[5] == 0, payload[6] == 0, payload[7] == 0 else { throw bad("reserved bytes are not zero") }
        guard phase < e else { throw bad("phase \(phase)") }
        let planeBits = flags & ~(sparseFlag | sparseMapFrameFlag)
        guard planeBits >> UInt8(e) == 0, flags & sparseMapFrameFlag == 0 || flags & sparseFlag != 0 else { throw bad("plane flags \(flags)") }
        guard (1...DeltaHeader.maxBases).contains(k) else { throw bad("\(k) base chunks (must be 1 to \(DeltaHeader.maxBases))") }
        let offset = payload.loadUnaligned(fromByteOffset: 8, as: UInt32.self).littleEndian
        let fullLength = payload.loadUnaligned(fromByteOffset: 12, as: UInt32.self).littleEndian
        guard payload.count >= fixedHeaderSize + k * baseEntrySize else { throw bad("payload too short for \(k) base ids") }
        var bases: [ChunkRef] = []
        var covered: UInt64 = 0
        for i in 0..<k {
            let at = fixedHeaderSize + i * baseEntrySize
            let id = ChunkID(canonical: Array(payload[at..<at + 16])[...])!
            let len = payload.loadUnaligned(fromByteOffset: at + 16, as: UInt32.self).littleEndian
            guard len > 0, len <= ChunkCodec.maxChunkLength else { throw bad("base chunk \(id.hex) length \(len)") }
            // Every base must be needed: the range must reach into the last one.
            if i == k - 1, covered >= UInt64(offset) + UInt64(n) { throw bad("base chunk \(id.hex) lies past the chunk's range") }
            covered += UInt64(len)
            bases.append(ChunkRef(id: id, rawLength: len))
        }
        guard UInt64(offset) < UInt64(bases[0].rawLength) else { throw bad("base offset \(offset) is past the first base chunk") }
        guard covered >= UInt64(offset) + UInt64(n) else {
            throw bad("base chunks cover \(covered) bytes, the chunk needs \(UInt64(offset) + UInt64(n))")
        }
        return DeltaHeader(elementSize: e, transform: transform, phase: phase, flags: flags, baseOffset: offset, fullLength: fullLength, bases: bases,
                           bodyStart: fixedHeaderSize + k * baseEntrySize)
    }

    /// Rebuilds the chunk into `out` from the payload and `base`, the `n` base bytes the header names.
    package static func decode(_ payload: UnsafeRawBufferPointer, header h: DeltaHeader, base: UnsafeRawBufferPointer, rawLength n: Int,
                       into out: UnsafeMutableRawBufferPointer, what: String) throws {
        func bad(_ m: String) -> SLMError { .damaged(path: what, problem: "delta codec: \(m)") }
        guard base.count == n, out.count >= n else { throw bad("base holds \(base.count) bytes, expected \(n)") }
        let e = h.elementSize
        let lead = min(n, (e - h.phase) % e)
        let count = (n - lead) / e
        let tail = n - lead - count * e
        var at = h.bodyStart
        guard payload.count >= at + lead + tail else { throw bad("payload too short for head and tail") }
        let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let src = payload.baseAddress!.assumingMemoryBound(to: UInt8.self)
        dst.update(from: src + at, count: lead)
        (dst + lead + count * e).update(from: src + at + lead, count: tail)
        at += lead + tail
        let body = UnsafeMutableRawPointer(dst + lead)
        let bb = base.baseAddress! + lead
        if h.flags & sparseFlag != 0 {
            try decodeSparse(payload, from: at, flags: h.flags, elementSize: e, count: count, base: bb, into: body, what: what, bad: bad)
            return
        }
        let planes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count * e))
        defer { planes.deallocate() }
        try PlaneCodec.readPlanes(payload, from: at, elementSize: e, count: count, flags: h.flags, into: planes, what: what, bad: bad)
        if e == 2 {
            let p0 = planes, p1 = planes + count
            applyLanes16(p0: p0, p1: p1, count: count, base: bb, into: body)
            for i in (count - count % lanes16)..<count { apply16(UInt16(p0[i]) << 8 | UInt16(p1[i]), element: i, base: bb, into: body) }
        } else {
            let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
            applyLanes32(planes: planes, count: count, base: bb, into: body)
            for i in (count - count % lanes32)..<count {
                apply32(UInt32(p0[i]) << 24 | UInt32(p1[i]) << 16 | UInt32(p2[i]) << 8 | UInt32(p3[i]), element: i, base: bb, into: body)
            }
        }
    }

    /// The sparse layout: a presence map of `count` bits, then planes over the changed elements
    /// only; every other element is its base element unchanged.
    static func decodeSparse(_ payload: UnsafeRawBufferPointer, from start: Int, flags: UInt8, elementSize e: Int, count: Int,
                             base bb: UnsafeRawPointer, into body: UnsafeMutableRawPointer, what: String,
                             bad: (String) -> SLMError) throws {
        let mapBytes = (count + 7) / 8
        // Padded with zero bytes to whole 64-bit words, which the loops below read.
        let words = (mapBytes + 7) / 8
        let map = UnsafeMutablePointer<UInt8>.allocate(capacity: max(8, 8 * words))
        defer { map.deallocate() }
        (map + mapBytes).initialize(repeating: 0, count: max(8, 8 * words) - mapBytes)
        let at = try PlaneCodec.readBlock(payload, at: start, count: mapBytes, frame: flags & sparseMapFrameFlag != 0, into: map,
                                          name: "presence map", what: what, bad: bad)
        if count % 8 != 0, map[mapBytes - 1] >> UInt8(count % 8) != 0 { throw bad("presence map marks elements past the chunk") }
        func word(_ w: Int) -> UInt64 { UInt64(littleEndian: UnsafeRawPointer(map + 8 * w).loadUnaligned(as: UInt64.self)) }
        var changed = 0
        for w in 0..<words { changed += word(w).nonzeroBitCount }
        let planes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, changed * e))
        defer { planes.deallocate() }
        try PlaneCodec.readPlanes(payload, from: at, elementSize: e, count: changed, flags: flags & ~(sparseFlag | sparseMapFrameFlag),
                                  into: planes, what: what, bad: bad)
        // Unchanged elements are the base's; only the marked ones get their difference applied,
        // found bit by bit in 64-bit words of the map. (A branch-free pass over every element,
        // one of eight fixed slots per map byte, and scattering the codes into zeroed dense
        // planes for the SIMD loop, all measured slower or no faster at 22% of elements changed;
        // words rather than bytes leave the inner loop about eight times less often.)
        body.copyMemory(from: bb, byteCount: count * e)
        var k = 0
        if e == 2 {
            let p0 = planes, p1 = planes + changed
            for w in 0..<words {
                var bits = word(w)
                while bits != 0 {
                    apply16(UInt16(p0[k]) << 8 | UInt16(p1[k]), element: w * 64 + bits.trailingZeroBitCount, base: bb, into: body)
                    bits &= bits &- 1
                    k += 1
                }
            }
        } else {
            let p0 = planes, p1 = planes + changed, p2 = planes + 2 * changed, p3 = planes + 3 * changed
            for w in 0..<words {
                var bits = word(w)
                while bits != 0 {
                    apply32(UInt32(p0[k]) << 24 | UInt32(p1[k]) << 16 | UInt32(p2[k]) << 8 | UInt32(p3[k]),
                            element: w * 64 + bits.trailingZeroBitCount, base: bb, into: body)
                    bits &= bits &- 1
                    k += 1
                }
            }
        }
    }

    /// Element `i` of the new chunk: its base element moved by the difference whose zigzag code is `z`.
    @inline(__always) static func apply16(_ z: UInt16, element i: Int, base bb: UnsafeRawPointer, into body: UnsafeMutableRawPointer) {
        let o = ordered16(bb.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) &+ unzigzag16(z)
        body.storeBytes(of: fromOrdered16(o), toByteOffset: 2 * i, as: UInt16.self)
    }

    @inline(__always) static func apply32(_ z: UInt32, element i: Int, base bb: UnsafeRawPointer, into body: UnsafeMutableRawPointer) {
        let o = ordered32(bb.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) &+ unzigzag32(z)
        body.storeBytes(of: fromOrdered32(o), toByteOffset: 4 * i, as: UInt32.self)
    }

    // Sign-magnitude floats mapped to integers in the same order (so nearby values are nearby
    // integers), and signed differences folded so small magnitudes get small codes.
    /// A bf16/f16 bit pattern mapped to an integer in the order of its value.
    @inline(__always) package static func ordered16(_ v: UInt16) -> UInt16 { v & 0x8000 != 0 ? ~v : v | 0x8000 }
    @inline(__always) static func fromOrdered16(_ o: UInt16) -> UInt16 { o & 0x8000 != 0 ? o & 0x7fff : ~o }
    /// A signed 16-bit difference folded so small magnitudes get small codes.
    @inline(__always) package static func zigzag16(_ d: UInt16) -> UInt16 { (d << 1) ^ UInt16(bitPattern: Int16(bitPattern: d) >> 15) }
    @inline(__always) static func unzigzag16(_ z: UInt16) -> UInt16 { (z >> 1) ^ (0 &- (z & 1)) }
    /// An f32 bit pattern mapped to an integer in the order of its value.
    @inline(__always) package static func ordered32(_ v: UInt32) -> UInt32 { v & 0x8000_0000 != 0 ? ~v : v | 0x8000_0000 }
    @inline(__always) static func fromOrdered32(_ o: UInt32) -> UInt32 { o & 0x8000_0000 != 0 ? o & 0x7fff_ffff : ~o }
    /// A signed 32-bit difference folded so small magnitudes get small codes.
    @inline(__always) package static func zigzag32(_ d: UInt32) -> UInt32 { (d << 1) ^ UInt32(bitPattern: Int32(bitPattern: d) >> 31) }
    @inline(__always) static func unzigzag32(_ z: UInt32) -> UInt32 { (z >> 1) ^ (0 &- (z & 1)) }
}
