// Codec 1 (zstd) and the zstd frames the planes codec uses, with reusable contexts.

import CZstd
import Foundation

/// What a byte plane holds, which decides how its compressor is tuned.
enum PlaneKind: Hashable {
    /// Bytes of float values (codec 2).
    case floatBytes
    /// Bytes of zigzag-coded differences, or a presence map (codec 3).
    case differences
}

/// Reusable zstd contexts, one checked out per concurrent worker: creating a context per chunk
/// would cost more than compressing a 64 KiB chunk. Unchecked: the context pointers are only
/// moved in and out of the arrays under `lock`, and a checked-out context has one user.
final class ZstdContextPool: @unchecked Sendable {
    private let lock = NSLock()
    private var compressors: [OpaquePointer] = []
    private var decompressors: [OpaquePointer] = []
    private var planeCompressors: [PlaneKind: [OpaquePointer]] = [:]

    static let shared = ZstdContextPool()

    func withCompressor<T>(_ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx = compressors.popLast() ?? ZSTD_createCCtx()!
        lock.unlock()
        defer { lock.lock(); compressors.append(ctx); lock.unlock() }
        return try body(ctx)
    }

    /// A compressor tuned for byte planes: almost no LZ matching (minimum match 7, 64-entry hash
    /// table), so zstd spends its effort on the Huffman-coded literals, which is what
    /// low-entropy, match-poor bytes need (2.6 bits per byte instead of 3.2 at level 3).
    func withPlaneCompressor<T>(_ kind: PlaneKind, _ body: (OpaquePointer) throws -> T) rethrows -> T {
        lock.lock()
        let ctx: OpaquePointer
        if let c = planeCompressors[kind]?.popLast() {
            ctx = c
        } else {
            ctx = ZSTD_createCCtx()!
            // Planes of float bytes: level -5 looks for matches at fewer positions, and literals
            // are Huffman-coded on request, which negative levels otherwise skip. Same size as
            // level 1, about 1.25x faster. Difference planes keep level 1: their runs of zero
            // codes are matches, and -5 made them 0.5% larger. A libzstd without the literal
            // setting (it is marked experimental) keeps level 1 for both.
            let huffman = kind == .floatBytes && ZSTD_isError(ZSTD_CCtx_setParameter(ctx, ZSTD_c_experimentalParam5, 1)) == 0
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, huffman ? -5 : 1)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_minMatch, 7)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_hashLog, 6)
            ZSTD_CCtx_setParameter(ctx, ZSTD_c_contentSizeFlag, 1)
        }
        lock.unlock()
        defer { lock.lock(); planeCompressors[kind, default: []].append(ctx); lock.unlock() }
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

enum ZstdCodec {
    /// A whole chunk as one zstd frame; nil when zstd fails.
    static func encode(_ raw: UnsafeRawBufferPointer, level: Int32) -> [UInt8]? {
        let bound = ZSTD_compressBound(raw.count)
        var n = 0
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            n = ZstdContextPool.shared.withCompressor { ZSTD_compressCCtx($0, buf.baseAddress, bound, raw.baseAddress, raw.count, level) }
            initialized = ZSTD_isError(n) == 0 ? n : 0
        }
        return ZSTD_isError(n) == 0 ? out : nil
    }

    /// Decodes one frame into exactly `rawLength` bytes; the frame must declare that size, so a
    /// hostile frame can never make us write more than the recorded length.
    static func decode(_ payload: UnsafeRawBufferPointer, rawLength: Int, into out: UnsafeMutableRawBufferPointer, what: String) throws {
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
    }

    /// Compresses a byte plane into a new zstd frame (with its content size); nil on failure.
    static func planeFrame(_ src: UnsafeRawBufferPointer, kind: PlaneKind) -> [UInt8]? {
        let bound = ZSTD_compressBound(src.count)
        var failed = false
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            let n = ZstdContextPool.shared.withPlaneCompressor(kind) { ZSTD_compress2($0, buf.baseAddress, bound, src.baseAddress, src.count) }
            failed = ZSTD_isError(n) != 0
            initialized = failed ? 0 : n
        }
        return failed ? nil : out
    }

    /// Decodes one zstd frame into exactly `count` bytes.
    static func decodePlane(_ src: UnsafeRawBufferPointer, count: Int, into out: UnsafeMutableRawPointer, what: String) throws {
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
