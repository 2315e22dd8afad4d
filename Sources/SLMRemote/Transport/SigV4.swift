// AWS Signature Version 4 for S3 requests (HMAC-SHA256 from libcrypto): canonical request,
// string to sign, signing key, Authorization header. The payload hash is always the real
// SHA-256 of the body, so the server verifies every byte it stores.

import SLMFormats
import SLMLocalStore
import Foundation

/// Signs S3 requests with AWS Signature Version 4.
public struct SigV4Signer: Sendable {
    let credentials: AWSCredentials
    let region: String
    let service = "s3"

    /// The SHA-256 of an empty body, in hex.
    public static let emptyPayloadHash = SHA256Hasher.hash([]).hex

    /// A key path with "@" and "+" left as they are (both are legal in a URL path). AWS S3
    /// decodes a path before checking its signature, so the encoded form is what it expects;
    /// some S3-compatible servers (moto) check the path exactly as it arrives, and reject
    /// "%40". S3Backend falls back to this form, signed as sent, when such a server refuses.
    public static func encodePathRaw(_ s: String) -> String {
        encode(s, keepSlash: true).replacingOccurrences(of: "%40", with: "@").replacingOccurrences(of: "%2B", with: "+")
    }

    /// RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~ is
    /// encoded; `/` too unless `keepSlash` (object key paths).
    public static func encode(_ s: String, keepSlash: Bool) -> String {
        var out = ""
        for b in s.utf8 {
            switch b {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                 UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: "~"):
                out.append(Character(UnicodeScalar(b)))
            case UInt8(ascii: "/") where keepSlash:
                out.append("/")
            default:
                out += String(format: "%%%02X", b)
            }
        }
        return out
    }

    /// The headers to add to a request: x-amz-date, x-amz-content-sha256, the session token and
    /// Authorization. `path` is already encoded (as sent); `query` pairs are raw.
    func sign(method: String, host: String, path: String, query: [(String, String)], headers: [String: String],
              payloadHash: String, date: Date = Date()) -> [String: String] {
        let amzDate = Timestamp.compact(time_t(date.timeIntervalSince1970))
        let day = String(amzDate.prefix(8))
        var signed = headers.reduce(into: [String: String]()) { $0[$1.key.lowercased()] = $1.value.trimmingCharacters(in: .whitespaces) }
        signed["host"] = host
        signed["x-amz-date"] = amzDate
        signed["x-amz-content-sha256"] = payloadHash
        if let token = credentials.sessionToken { signed["x-amz-security-token"] = token }
        let names = signed.keys.sorted()
        let encodedQuery: [(key: String, value: String)] = query.map { (Self.encode($0.0, keepSlash: false), Self.encode($0.1, keepSlash: false)) }
        let sortedQuery = encodedQuery.sorted { a, b in a.key == b.key ? a.value < b.value : a.key < b.key }
        let canonicalQuery: String = sortedQuery.map { "\($0.key)=\($0.value)" }.joined(separator: "&")
        var canonicalHeaders = ""
        for name in names { canonicalHeaders += "\(name):\(signed[name]!)\n" }
        let lines: [String] = [method, path, canonicalQuery, canonicalHeaders, names.joined(separator: ";"), payloadHash]
        let canonicalRequest = lines.joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, SHA256Hasher.hash(Array(canonicalRequest.utf8)).hex].joined(separator: "\n")
        var key = HMACSHA256.mac(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = HMACSHA256.mac(key: key, data: Array(part.utf8)) }
        let signature = Hex.encode(HMACSHA256.mac(key: key, data: Array(stringToSign.utf8)))
        var out = signed
        out["host"] = nil
        out["authorization"] = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(names.joined(separator: ";")), Signature=\(signature)"
        return out
    }
}
