// How a chunk's bytes are stored in a pack. The codec byte is part of the format (Format.md);
// decoding is always bounded by the chunk's recorded raw length.

import CZstd
import Foundation

public enum ChunkCodec: UInt8, Sendable {
    case raw = 0
    case zstd = 1
    /// Float elements split into byte planes (exponents apart), each plane zstd or raw.
    case planes = 2

    public var name: String {
        switch self {
        case .raw: return "raw"
        case .zstd: return "zstd"
        case .planes: return "planes"
        }
    }
}

/// How the bytes of a chunk that lies inside one float tensor are laid out, so the encoder can
/// split them into planes: element size, which plane transform, and where the chunk starts
/// within an element.
public struct FloatLayout: Equatable, Sendable {
    public enum Transform: UInt8, Sendable {
        /// Plane j holds byte E-1-j of every element (most significant first).
        case byteSplit = 0
        /// The 8 exponent bits in plane 0, sign and top mantissa bits in plane 1, then the
        /// remaining mantissa bytes (bf16: 2 planes; f32: 4 planes).
        case exponentSplit = 1
    }

    public var elementSize: Int
    public var transform: Transform
    public var phase: Int

    public init(elementSize: Int, transform: Transform, phase: Int) {
        self.elementSize = elementSize
        self.transform = transform
        self.phase = phase
    }

    /// The layout for a tensor dtype, or nil when planes do not apply.
    public static func forDtype(_ dtype: String, phase: Int) -> FloatLayout? {
        switch dtype {
        case "BF16": return FloatLayout(elementSize: 2, transform: .exponentSplit, phase: phase % 2)
        case "F32": return FloatLayout(elementSize: 4, transform: .exponentSplit, phase: phase % 4)
        case "F16": return FloatLayout(elementSize: 2, transform: .byteSplit, phase: phase % 2)
        default: return nil
        }
    }
}

/// Reusable zstd contexts, one checked out per concurrent worker: creating a context per chunk
/// would cost more than compressing a 64 KiB chunk.
final class ZstdContextPool: @unchecked Sendable {
    private let lock = NSLock()
    private var compressors: [OpaquePointer] = []
    private var decompressors: [OpaquePointer] = []
    private var planeCompressors: [OpaquePointer] = []

    static let shared = ZstdContextPool()

    func withCompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx = compressors.popLast() ?? ZSTD_createCCtx()!
        lock.unlock()
        defer { lock.lock(); compressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }

    /// A compressor tuned for float exponent planes: almost no LZ matching (minimum match 7,
    /// 64-entry hash table), so zstd spends its effort on the Huffman-coded literals, which is
    /// what low-entropy, match-poor bytes need (2.6 bits per byte instead of 3.2 at level 3).
    func withPlaneCompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx: OpaquePointer
        if let c = planeCompressors.popLast() {
            ctx = c
        } else {
            ctx = ZSTD_createCCtx()!
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, 1)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_minMatch, 7)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_hashLog, 6)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 1)
        }
        lock.unlock()
        defer { lock.lock(); planeCompressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }

    func withDecompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx = decompressors.popLast() ?? ZSTD_createDCtx()!
        lock.unlock()
        defer { lock.lock(); decompressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }
}

public struct EncodedChunk: Sendable {
    public var codec: ChunkCodec
    public var payload: [UInt8]
}

public enum ChunkEncoder {
    /// A chunk is kept raw unless compression saves at least this share.
    static let minimumSaving = 0.03

    public static func encode(_ raw: UnsafeRawBufferPointer, level: Int32, layout: FloatLayout? = nil) -> EncodedChunk {
        if let layout, raw.count >= 4 * layout.elementSize {
            let planes = PlaneCodec.encode(raw, layout: layout, level: level)
            if Double(planes.count) <= Double(raw.count) * (1 - minimumSaving) {
                return EncodedChunk(codec: .planes, payload: planes)
            }
            return EncodedChunk(codec: .raw, payload: Array(raw))
        }
        let bound = ZSTD_compressBound(raw.count)
        var n = 0
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            n = ZstdContextPool.shared.withCompressor { ZSTD_compressCCtx($0, buf.baseAddress, bound, raw.baseAddress, raw.count, level) }
            initialized = ZSTD_isError(n) == 0 ? n : 0
        }
        if ZSTD_isError(n) == 0, Double(n) <= Double(raw.count) * (1 - minimumSaving) {
            return EncodedChunk(codec: .zstd, payload: out)
        }
        return EncodedChunk(codec: .raw, payload: Array(raw))
    }

    /// Decodes `payload` into exactly `rawLength` bytes, or throws naming `what`.
    public static func decode(codec: ChunkCodec, payload: UnsafeRawBufferPointer, rawLength: Int,
                              into out: UnsafeMutableRawBufferPointer, what: String) throws {
        precondition(out.count >= rawLength)
        switch codec {
        case .raw:
            guard payload.count == rawLength else {
                throw SLMError.damaged(path: what, problem: "raw chunk holds \(payload.count) bytes, expected \(rawLength)")
            }
            out.baseAddress!.copyMemory(from: payload.baseAddress!, byteCount: rawLength)
        case .zstd:
            let declared = ZSTD_getFrameContentSize(payload.baseAddress, payload.count)
            guard declared == UInt64(rawLength) else {
                throw SLMError.damaged(path: what, problem: "zstd frame declares \(declared) bytes, expected \(rawLength)")
            }
            let n = ZstdContextPool.shared.withDecompressor { ctx in
                ZSTD_decompressDCtx(ctx, out.baseAddress, rawLength, payload.baseAddress, payload.count)
            }
            guard ZSTD_isError(n) == 0 else {
                throw SLMError.damaged(path: what, problem: "zstd: \(String(cString: ZSTD_getErrorName(n)))")
            }
            guard n == rawLength else {
                throw SLMError.damaged(path: what, problem: "zstd frame decoded to \(n) bytes, expected \(rawLength)")
            }
        case .planes:
            try PlaneCodec.decode(payload, rawLength: rawLength, into: out, what: what)
        }
    }

    /// Compresses a byte plane into a new zstd frame (with its content size); nil on failure.
    static func zstdFrame(_ src: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        let bound = ZSTD_compressBound(src.count)
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            let n = ZstdContextPool.shared.withPlaneCompressor { ZSTD_compress2($0, buf.baseAddress, bound, src.baseAddress, src.count) }
            failed = ZSTD_isError(n) != 0
            initialized = failed ? 0 : n
        }
        return failed ? nil : out
    }

    /// Decodes one zstd frame into exactly `count` bytes.
    static func unzstd(_ src: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutableRawPointer, what: String) throws {
        let declared = ZSTD_getFrameContentSize(src.baseAddress, src.count)
        guard declared == UInt64(count) else {
            throw SLMError.damaged(path: what, problem: "zstd plane declares \(declared) bytes, expected \(count)")
        }
        let n = ZstdContextPool.shared.withDecompressor { ZSTD_decompressDCtx($0, out, count, src.baseAddress, src.count) }
        guard ZSTD_isError(n) == 0, n == count else {
            throw SLMError.damaged(path: what, problem: "zstd plane: \(ZSTD_isError(n) != 0 ? String(cString: ZSTD_getErrorName(n)) : "decoded \(n) bytes, expected \(count)")")
        }
    }
}

/// Codec 2: the byte-plane layout for float tensors (see Format.md, section 5).
enum PlaneCodec {
    /// A plane is compressed only when its byte entropy suggests zstd will pay.
    static let entropyLimit = 7.2

    static func encode(_ raw: UnsafeRawBufferPointer, layout: FloatLayout, level: Int32) -> [UInt8] {
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
               let frame = ChunkEncoder.zstdFrame(plane, level: level), Double(frame.count) < Double(count) * 0.95 {
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

    /// Order-0 entropy in bits per byte of (a prefix of) `bytes`.
    static func entropy(_ bytes: UnsafeRawBufferPointer, sample: Int) -> Double {
        let n = min(bytes.count, sample)
        guard n > 0 else { return 8 }
        var hist = [UInt32](repeating: 0, count: 256)
        hist.withUnsafeMutableBufferPointer { h in
            for i in 0..<n { h[Int(bytes[i])] &+= 1 }
        }
        var result = 0.0
        for c in hist where c > 0 {
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
        for j in 0..<e {
            guard payload.count >= at + 4 else { throw bad("missing plane \(j)") }
            let len = Int(UInt32(payload[at]) | UInt32(payload[at + 1]) << 8 | UInt32(payload[at + 2]) << 16 | UInt32(payload[at + 3]) << 24)
            at += 4
            guard payload.count - at >= len else { throw bad("plane \(j) runs past the payload") }
            let src = UnsafeRawBufferPointer(rebasing: payload[at..<at + len])
            if flags & (1 << UInt8(j)) != 0 {
                try ChunkEncoder.unzstd(src, count: count, into: planes + j * count, what: what)
            } else {
                guard len == count else { throw bad("raw plane \(j) has \(len) bytes, expected \(count)") }
                (planes + j * count).update(from: src.baseAddress!.assumingMemoryBound(to: UInt8.self), count: count)
            }
            at += len
        }
        guard at == payload.count else { throw bad("\(payload.count - at) bytes after the last plane") }
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
