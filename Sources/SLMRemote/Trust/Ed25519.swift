// Ed25519 keys and signatures through libcrypto's EVP interface. Keys are kept in the PEM forms
// OpenSSL itself writes (PKCS#8 private, SubjectPublicKeyInfo public), so `openssl pkey` reads them.

import SLMFormats
import SLMLocalStore
import COpenSSL
import Foundation

/// An Ed25519 public key: what a device trusts.
public struct Ed25519PublicKey: Hashable, Sendable, CustomStringConvertible {
    /// The 32 key bytes.
    public let raw: [UInt8]

    /// The key of these 32 bytes, or nil for any other length.
    public init?(raw: [UInt8]) {
        guard raw.count == 32 else { return nil }
        self.raw = raw
    }

    /// How metadata names a key: the hex of its 32 raw bytes.
    public var hex: String { Hex.encode(raw) }
    /// The key in hex.
    public var description: String { hex }

    /// Whether `signature` (64 bytes) is this key's signature of `message` (libcrypto).
    public func isValidSignature(_ signature: [UInt8], of message: [UInt8]) -> Bool {
        guard signature.count == 64,
              let pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nil, raw, raw.count) else { return false }
        defer { EVP_PKEY_free(pkey) }
        guard let ctx = EVP_MD_CTX_new() else { return false }
        defer { EVP_MD_CTX_free(ctx) }
        guard EVP_DigestVerifyInit(ctx, nil, nil, nil, pkey) == 1 else { return false }
        return EVP_DigestVerify(ctx, signature, signature.count, message, message.count) == 1
    }

    static let spkiPrefix: [UInt8] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00]

    /// The key as a `PUBLIC KEY` PEM file (SubjectPublicKeyInfo), as `keygen` writes it.
    public var pem: String { PEM.encode(Self.spkiPrefix + raw, label: "PUBLIC KEY") }

    /// A `PUBLIC KEY` PEM file as `keygen` (or `openssl pkey -pubout`) writes it.
    public static func read(file path: String) throws -> Ed25519PublicKey {
        try PEM.readKey(path, label: "PUBLIC KEY", prefix: spkiPrefix, what: "public") { Ed25519PublicKey(raw: $0) }
    }
}

/// An Ed25519 private key: what a publisher signs releases with.
public struct Ed25519PrivateKey: Sendable {
    let seed: [UInt8]  // 32
    /// Its public key.
    public let publicKey: Ed25519PublicKey

    init?(seed: [UInt8]) {
        guard seed.count == 32, let pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, 32) else { return nil }
        defer { EVP_PKEY_free(pkey) }
        var pub = [UInt8](repeating: 0, count: 32)
        var len = 32
        guard EVP_PKEY_get_raw_public_key(pkey, &pub, &len) == 1, len == 32, let key = Ed25519PublicKey(raw: pub) else { return nil }
        self.seed = seed
        publicKey = key
    }

    /// A new key from the system's random source.
    public static func generate() throws -> Ed25519PrivateKey {
        var seed = [UInt8](repeating: 0, count: 32)
        guard RAND_bytes(&seed, 32) == 1, let key = Ed25519PrivateKey(seed: seed) else {
            throw SLMError.failed("cannot generate an Ed25519 key: libcrypto's random generator failed")
        }
        return key
    }

    /// The 64-byte signature of `message`.
    public func sign(_ message: [UInt8]) throws -> [UInt8] {
        guard let pkey = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nil, seed, 32), let ctx = EVP_MD_CTX_new() else {
            throw SLMError.failed("libcrypto cannot load the Ed25519 key")
        }
        defer { EVP_PKEY_free(pkey); EVP_MD_CTX_free(ctx) }
        var sig = [UInt8](repeating: 0, count: 64)
        var len = 64
        guard EVP_DigestSignInit(ctx, nil, nil, nil, pkey) == 1,
              EVP_DigestSign(ctx, &sig, &len, message, message.count) == 1, len == 64 else {
            throw SLMError.failed("libcrypto failed to sign with the Ed25519 key")
        }
        return sig
    }

    static let pkcs8Prefix: [UInt8] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
                                       0x04, 0x22, 0x04, 0x20]

    /// The key as a `PRIVATE KEY` PEM file (PKCS#8), as `keygen` writes it.
    public var pem: String { PEM.encode(Self.pkcs8Prefix + seed, label: "PRIVATE KEY") }

    /// Reads a `PRIVATE KEY` PEM file (`keygen`'s, or `openssl genpkey -algorithm ed25519`'s).
    public static func read(file path: String) throws -> Ed25519PrivateKey {
        try PEM.readKey(path, label: "PRIVATE KEY", prefix: pkcs8Prefix, what: "private") { Ed25519PrivateKey(seed: $0) }
    }
}

enum PEM {
    static func encode(_ der: [UInt8], label: String) -> String {
        let b64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(label)-----\n\(b64)\n-----END \(label)-----\n"
    }

    /// An Ed25519 key file: the fixed DER prefix of its kind, then the 32 key bytes.
    static func readKey<K>(_ path: String, label: String, prefix: [UInt8], what: String, make: ([UInt8]) -> K?) throws -> K {
        let bytes = try FileSystem.readFile(path, limit: 64 << 10)
        guard let der = decode(bytes, label: label), der.count == prefix.count + 32, Array(der.prefix(prefix.count)) == prefix,
              let key = make(Array(der.suffix(32))) else {
            throw SLMError.input(path: path, problem: "not an Ed25519 \(what) key (expected a PEM \"\(label)\")").remedied(by: .generateKey)
        }
        return key
    }

    static func decode(_ bytes: [UInt8], label: String) -> [UInt8]? {
        guard let text = String(bytes: bytes, encoding: .utf8),
              let begin = text.range(of: "-----BEGIN \(label)-----"),
              let end = text.range(of: "-----END \(label)-----", range: begin.upperBound..<text.endIndex) else { return nil }
        let body = text[begin.upperBound..<end.lowerBound].filter { !$0.isWhitespace }
        return Data(base64Encoded: String(body)).map { [UInt8]($0) }
    }
}
