// Streaming SHA-256 from OpenSSL's libcrypto: file digests (the Hub's LFS oid), tree and version ids.

import COpenSSL

/// A SHA-256 digest: a file's checksum, or the id of a tree or version object.
public struct SHA256Digest: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The 32 bytes.
    public let bytes: [UInt8]

    /// The digest of these 32 bytes, or nil for any other length.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 32 else { return nil }
        self.bytes = bytes
    }

    /// The digest spelled by 64 hex digits (either case), or nil.
    public init?(hex: String) {
        guard hex.utf8.count == 64, let b = Hex.decode(hex.lowercased()) else { return nil }
        self.bytes = b
    }

    /// The 64 lowercase hex digits.
    public var hex: String { Hex.encode(bytes) }
    /// The hex digits.
    public var description: String { hex }

    /// Digests in byte order.
    public static func < (a: SHA256Digest, b: SHA256Digest) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// Incremental hasher; one per stream. Unchecked: it crosses threads (the ingester feeds it from
/// a worker) but is only ever used by one at a time.
public final class SHA256Hasher: @unchecked Sendable {
    private let ctx: OpaquePointer

    /// A hasher that has seen nothing yet.
    public init() {
        ctx = EVP_MD_CTX_new()
        EVP_DigestInit_ex(ctx, EVP_sha256(), nil)
    }

    deinit { EVP_MD_CTX_free(ctx) }

    /// Feeds the next bytes of the stream.
    public func update(_ buffer: UnsafeRawBufferPointer) {
        guard buffer.count > 0 else { return }
        EVP_DigestUpdate(ctx, buffer.baseAddress, buffer.count)
    }

    /// Feeds the next bytes of the stream.
    public func update(_ bytes: [UInt8]) { bytes.withUnsafeBytes { update($0) } }

    /// The digest of everything fed; the hasher is done after this.
    public func finish() -> SHA256Digest {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return SHA256Digest(bytes: out)!
    }

    /// The digest of `bytes`.
    public static func hash(_ bytes: [UInt8]) -> SHA256Digest {
        let h = SHA256Hasher()
        h.update(bytes)
        return h.finish()
    }
}

/// MD5, needed only to derive the FastCDC gear table exactly as the canonical implementation does.
package enum MD5 {
    static func hash(_ bytes: [UInt8]) -> [UInt8] {
        let ctx = EVP_MD_CTX_new()
        defer { EVP_MD_CTX_free(ctx) }
        EVP_DigestInit_ex(ctx, EVP_md5(), nil)
        bytes.withUnsafeBytes { _ = EVP_DigestUpdate(ctx, $0.baseAddress, $0.count) }
        var out = [UInt8](repeating: 0, count: 16)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return out
    }
}

/// HMAC-SHA256 (libcrypto), for signing S3 requests.
public enum HMACSHA256 {
    /// The 32-byte HMAC-SHA256 of `data` under `key`.
    public static func mac(key: [UInt8], data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 32)
        var len: UInt32 = 0
        _ = HMAC(EVP_sha256(), key, Int32(key.count), data, data.count, &out, &len)
        return out
    }
}

extension MD5 {
    /// MD5 of a buffer, for S3's Content-MD5 integrity header.
    package static func hash(_ buffer: UnsafeRawBufferPointer) -> [UInt8] {
        let ctx = EVP_MD_CTX_new()
        defer { EVP_MD_CTX_free(ctx) }
        EVP_DigestInit_ex(ctx, EVP_md5(), nil)
        if buffer.count > 0 { EVP_DigestUpdate(ctx, buffer.baseAddress, buffer.count) }
        var out = [UInt8](repeating: 0, count: 16)
        var len: UInt32 = 0
        EVP_DigestFinal_ex(ctx, &out, &len)
        return out
    }
}
