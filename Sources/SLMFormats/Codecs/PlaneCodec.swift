// Codec 2: float tensor chunks split into byte planes (exponents apart), each plane zstd'd or
// raw (Format.md, section 5).

import Foundation

/// Codec 2: the byte-plane layout for float tensors (see Format.md, section 5).
enum PlaneCodec {
    /// A plane is compressed only when its byte entropy suggests zstd will pay.
    static let entropyLimit = 7.2

    static func encode(_ raw: UnsafeRawBufferPointer, layout: FloatLayout) -> [UInt8] {
        let e = layout.elementSize
        let n = raw.count
        let lead = min(n, (e - layout.phase) % e)
        let count = (n - lead) / e
        let tail = n - lead - count * e
        let src = raw.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let planes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count * e))
        defer { planes.deallocate() }
        split(UnsafeRawPointer(src + lead), count: count, layout: layout, into: planes)
        enum Plane { case raw(UnsafeRawBufferPointer), frame([UInt8]) }
        var flags: UInt8 = 0
        var encoded: [Plane] = []
        var total = 4 + lead + tail
        for j in 0..<e {
            let plane = UnsafeRawBufferPointer(start: planes + j * count, count: count)
            // The exponent plane (0) always pays; the others only when their bytes are skewed.
            if count > 0, j == 0 || entropy(plane, sample: 8192) < entropyLimit,
               let frame = ZstdCodec.planeFrame(plane, kind: .floatBytes), Double(frame.count) < Double(count) * 0.95 {
                flags |= 1 << UInt8(j)
                encoded.append(.frame(frame))
                total += 4 + frame.count
            } else {
                encoded.append(.raw(plane))
                total += 4 + count
            }
        }
        var w = ByteWriter(capacity: total)
        w.u8(UInt8(e))
        w.u8(layout.transform.rawValue)
        w.u8(UInt8(layout.phase))
        w.u8(flags)
        w.raw(UnsafeRawBufferPointer(start: src, count: lead))
        w.raw(UnsafeRawBufferPointer(start: src + lead + count * e, count: tail))
        for p in encoded {
            switch p {
            case let .frame(f): w.u32(UInt32(f.count)); w.raw(f)
            case let .raw(r): w.u32(UInt32(r.count)); w.raw(r)
            }
        }
        return w.bytes
    }

    /// Splits `count` elements into `elementSize` planes of `count` bytes each.
    @inline(__always)
    static func split(_ body: UnsafeRawPointer, count: Int, layout: FloatLayout, into planes: UnsafeMutablePointer<UInt8>) {
        switch (layout.transform, layout.elementSize) {
        case (.exponentSplit, 2):
            let p0 = planes, p1 = planes + count
            for i in 0..<count {
                let v = body.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)
                p0[i] = UInt8(truncatingIfNeeded: v >> 7)
                p1[i] = UInt8(truncatingIfNeeded: ((v >> 8) & 0x80) | (v & 0x7f))
            }
        case (.exponentSplit, _):
            let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
            for i in 0..<count {
                let v = body.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
                p0[i] = UInt8(truncatingIfNeeded: v >> 23)
                p1[i] = UInt8(truncatingIfNeeded: ((v >> 24) & 0x80) | ((v >> 16) & 0x7f))
                p2[i] = UInt8(truncatingIfNeeded: v >> 8)
                p3[i] = UInt8(truncatingIfNeeded: v)
            }
        default:
            let e = layout.elementSize
            let b = body.assumingMemoryBound(to: UInt8.self)
            for j in 0..<e {
                let p = planes + j * count
                let k = e - 1 - j
                for i in 0..<count { p[i] = b[i * e + k] }
            }
        }
    }

    /// Reads E length-prefixed planes of `count` bytes (raw, or a zstd frame where `flags` says)
    /// starting at `at`; the payload must end exactly after the last one. Codecs 2 and 3 share it.
    static func readPlanes(_ payload: UnsafeRawBufferPointer, from start: Int, elementSize e: Int, count: Int, flags: UInt8,
                           into planes: UnsafeMutablePointer<UInt8>, what: String, bad: (String) -> SLMError) throws {
        var at = start
        for j in 0..<e {
            at = try readBlock(payload, at: at, count: count, frame: flags & (1 << UInt8(j)) != 0, into: planes + j * count,
                               name: "plane \(j)", what: what, bad: bad)
        }
        guard at == payload.count else { throw bad("\(payload.count - at) bytes after the last plane") }
    }

    /// Reads one length-prefixed block that holds `count` bytes, a zstd frame when `frame`, and
    /// returns the offset just past it. A plane and codec 3's presence map are both such blocks.
    static func readBlock(_ payload: UnsafeRawBufferPointer, at start: Int, count: Int, frame: Bool, into dst: UnsafeMutablePointer<UInt8>,
                          name: String, what: String, bad: (String) -> SLMError) throws -> Int {
        guard payload.count >= start + 4 else { throw bad("missing \(name)") }
        let len = Int(payload.loadUnaligned(fromByteOffset: start, as: UInt32.self).littleEndian)
        let at = start + 4
        guard payload.count - at >= len else { throw bad("\(name) runs past the payload") }
        let src = UnsafeRawBufferPointer(rebasing: payload[at..<at + len])
        if frame {
            try ZstdCodec.decodePlane(src, count: count, into: dst, what: what)
        } else {
            guard len == count else { throw bad("raw \(name) has \(len) bytes, expected \(count)") }
            dst.update(from: src.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
        }
        return at + len
    }

    /// Order-0 entropy in bits per byte of (a prefix of) `bytes`.
    static func entropy(_ bytes: UnsafeRawBufferPointer, sample: Int) -> Double {
        let n = min(bytes.count, sample)
        guard n > 0 else { return 8 }
        // Four tables, summed at the end: runs of equal bytes (the zero codes of a difference
        // plane) would otherwise make every increment wait for the one before it.
        var hist = [UInt32](repeating: 0, count: 4 * 256)
        hist.withUnsafeMutableBufferPointer { h in
            let h = h.baseAddress!
            var i = 0
            while i + 4 <= n {
                h[Int(bytes[i])] &+= 1
                h[256 + Int(bytes[i + 1])] &+= 1
                h[512 + Int(bytes[i + 2])] &+= 1
                h[768 + Int(bytes[i + 3])] &+= 1
                i += 4
            }
            while i < n { h[Int(bytes[i])] &+= 1; i += 1 }
            for v in 0..<256 { h[v] = h[v] &+ h[256 + v] &+ h[512 + v] &+ h[768 + v] }
        }
        var result = 0.0
        for c in hist[0..<256] where c > 0 {
            let q = Double(c) / Double(n)
            result -= q * log2(q)
        }
        return result
    }

    static func decode(_ payload: UnsafeRawBufferPointer, rawLength n: Int, into out: UnsafeMutableRawBufferPointer, what: String) throws {
        func bad(_ m: String) -> SLMError { .damaged(path: what, problem: "planes codec: \(m)") }
        guard payload.count >= 4 else { throw bad("payload shorter than its header") }
        let e = Int(payload[0])
        guard e == 2 || e == 4 else { throw bad("element size \(e)") }
        guard let transform = FloatLayout.Transform(rawValue: payload[1]) else { throw bad("transform \(payload[1])") }
        let phase = Int(payload[2])
        guard phase < e else { throw bad("phase \(phase)") }
        let flags = payload[3]
        guard flags >> UInt8(e) == 0 else { throw bad("plane flags \(flags)") }
        let lead = min(n, (e - phase) % e)
        let count = (n - lead) / e
        let tail = n - lead - count * e
        var at = 4
        guard payload.count >= at + lead + tail else { throw bad("payload too short for head and tail") }
        let dst = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        dst.update(from: payload.baseAddress!.assumingMemoryBound(to: UInt8.self) + at, count: lead)
        (dst + lead + count * e).update(from: payload.baseAddress!.assumingMemoryBound(to: UInt8.self) + at + lead, count: tail)
        at += lead + tail
        let planes = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, count * e))
        defer { planes.deallocate() }
        try readPlanes(payload, from: at, elementSize: e, count: count, flags: flags, into: planes, what: what, bad: bad)
        let body = dst + lead
        switch (transform, e) {
        case (.exponentSplit, 2):
            let p0 = planes, p1 = planes + count
            for i in 0..<count {
                body[2 * i + 1] = (p1[i] & 0x80) | (p0[i] >> 1)
                body[2 * i] = ((p0[i] & 1) << 7) | (p1[i] & 0x7f)
            }
        case (.exponentSplit, _):
            let p0 = planes, p1 = planes + count, p2 = planes + 2 * count, p3 = planes + 3 * count
            for i in 0..<count {
                body[4 * i + 3] = (p1[i] & 0x80) | (p0[i] >> 1)
                body[4 * i + 2] = ((p0[i] & 1) << 7) | (p1[i] & 0x7f)
                body[4 * i + 1] = p2[i]
                body[4 * i] = p3[i]
            }
        default:
            for j in 0..<e {
                let p = planes + j * count
                let k = e - 1 - j
                for i in 0..<count { body[i * e + k] = p[i] }
            }
        }
    }
}
