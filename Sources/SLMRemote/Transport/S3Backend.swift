// A store directory in an S3 bucket (or anything that speaks its API: MinIO, Ceph RGW, R2,
// moto), reached natively: SigV4-signed requests, ranged GETs, conditional GETs and PUTs
// (If-None-Match / If-Match) for compare-and-swap, and multipart uploads for large packs that
// resume after a kill from a state file kept beside the local file being uploaded.

import SLMFormats
import SLMLocalStore
import Foundation
import Synchronization

/// A store directory under a prefix of an S3 bucket, reached natively (SigV4).
public final class S3Backend: StoreBackend {
    /// The bucket.
    public let bucket: String
    /// Key prefix of the store inside the bucket ("" or "a/b", no slashes at the ends).
    public let prefix: String
    let config: AWSConfig
    let client: HTTPClient
    let signer: SigV4Signer?
    private let counter = TrafficCounter()
    /// Multipart uploads are used above this size, in parts of this size.
    let partSize: Int

    /// Pages a listing may take (10,000 pages of up to 1,000 keys by default).
    let maxListPages: Int
    /// Seconds a listing may take in all (an endpoint that pages forever, slowly, is hostile).
    let listDeadline: Double

    /// A backend for s3://`bucket`/`prefix` with `config`'s endpoint, region and credentials;
    /// uploads above `partSize` go in parts of that size.
    public init(bucket: String, prefix: String, config: AWSConfig, partSize: Int = 16 << 20,
                policy: HTTPClient.Policy = HTTPClient.Policy(), maxListPages: Int = 10_000, listDeadline: Double = 600) {
        self.maxListPages = maxListPages
        self.listDeadline = listDeadline
        self.bucket = bucket
        self.prefix = prefix
        self.config = config
        self.partSize = max(5 << 20, partSize)
        // A signed request is bound to its host and body: a redirect is an answer to report,
        // never one to follow (a 307 on PUT once re-sent the token, without body or signature,
        // to whatever host it named, and push took that host's 200 for success).
        var policy = policy
        policy.maxRedirects = 0
        client = HTTPClient(policy: policy)
        signer = config.credentials.map { SigV4Signer(credentials: $0, region: config.region) }
    }

    /// `s3://bucket/prefix` into its parts, checked.
    public static func parse(_ location: String) throws -> (bucket: String, prefix: String) {
        let rest = location.dropFirst("s3://".count)
        let parts = rest.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let bucket = String(parts[0])
        guard (3...63).contains(bucket.count),
              bucket.allSatisfy({ $0.isLowercase && $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." }) else {
            throw SLMError.argument("\"\(location)\": \"\(bucket)\" is not an S3 bucket name (3-63 lowercase letters, digits, - and .)")
        }
        var prefix = parts.count > 1 ? String(parts[1]) : ""
        while prefix.hasSuffix("/") { prefix.removeLast() }
        guard !prefix.hasPrefix("/"), !prefix.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }) else {
            throw SLMError.argument("\"\(location)\": the key prefix must be a plain path")
        }
        return (bucket, prefix)
    }

    /// s3://bucket/prefix.
    public var location: String { "s3://\(bucket)" + (prefix.isEmpty ? "" : "/" + prefix) }
    /// Bytes and requests so far.
    public var traffic: Traffic { counter.snapshot }

    func key(_ path: String) -> String { prefix.isEmpty ? path : (path.isEmpty ? prefix : prefix + "/" + path) }

    // MARK: Requests

    /// Path-style addressing at a custom endpoint (what S3-compatible services need);
    /// virtual-hosted style at AWS, unless the bucket name holds dots (TLS names would not match).
    /// The URL base, the host, and the key's path (encoded as AWS signs it, or raw: see
    /// `SigV4Signer.encodePathRaw`), sent and signed alike.
    private func address(_ key: String?, raw: Bool) -> (base: String, host: String, path: String) {
        let encodedKey = key.map { "/" + (raw ? SigV4Signer.encodePathRaw($0) : SigV4Signer.encode($0, keepSlash: true)) } ?? ""
        if let ep = config.endpoint {
            let host = ep.host! + (ep.port.map { ":\($0)" } ?? "")
            let basePath = (ep.path == "/" ? "" : ep.path) + "/" + bucket
            return ("\(ep.scheme!)://\(host)", host, basePath + encodedKey)
        }
        if bucket.contains(".") {
            let host = "s3.\(config.region).amazonaws.com"
            return ("https://\(host)", host, "/" + bucket + encodedKey)
        }
        let host = "\(bucket).s3.\(config.region).amazonaws.com"
        return ("https://\(host)", host, encodedKey.isEmpty ? "/" : encodedKey)
    }

    /// Set once a server refused the AWS form of a path holding "@" or "+" and took the raw one.
    private let rawPaths = Mutex(false)

    private func send(_ method: String, key: String?, query: [(String, String)] = [], headers: [String: String] = [:],
                      body: [UInt8]? = nil, limit: Int, stream: HTTPClient.BodyStream? = nil) throws -> HTTPResponse {
        let differs = key.map { $0.contains("@") || $0.contains("+") } ?? false
        let raw = differs && rawPaths.withLock { $0 }
        let r = try send(method, key: key, raw: raw, query: query, headers: headers, body: body, limit: limit, stream: stream)
        // A HEAD answer has no body to say why, so any 403 to it counts.
        if differs, !raw, r.status == 403,
           method == "HEAD" || String(decoding: r.body.prefix(2048), as: UTF8.self).contains("SignatureDoesNotMatch") {
            let again = try send(method, key: key, raw: true, query: query, headers: headers, body: body, limit: limit, stream: stream)
            if again.status != 403 { rawPaths.withLock { $0 = true } }
            return again
        }
        return r
    }

    private func send(_ method: String, key: String?, raw: Bool, query: [(String, String)], headers: [String: String],
                      body: [UInt8]?, limit: Int, stream: HTTPClient.BodyStream? = nil) throws -> HTTPResponse {
        let (base, host, path) = address(key, raw: raw)
        let queryString = query.map { "\(SigV4Signer.encode($0.0, keepSlash: false))=\(SigV4Signer.encode($0.1, keepSlash: false))" }
            .joined(separator: "&")
        guard let url = URL(string: base + path + (query.isEmpty ? "" : "?" + queryString)) else {
            throw SLMError.argument("\(location): cannot form a URL for key \"\(key ?? "")\"")
        }
        var all = headers
        if let body {
            all["Content-MD5"] = Data(body.withUnsafeBytes { MD5.hash($0) }).base64EncodedString()
            // Without a type curl would send a form type, and a server may parse the body as a form.
            if all["Content-Type"] == nil { all["Content-Type"] = "application/octet-stream" }
        }
        if let signer {
            let payload = body.map { SHA256Hasher.hash($0).hex } ?? SigV4Signer.emptyPayloadHash
            for (k, v) in signer.sign(method: method, host: host, path: path, query: query, headers: [:], payloadHash: payload) { all[k] = v }
        }
        let r: HTTPResponse
        do {
            r = try client.perform(url, method: method, headers: all, body: body, limit: limit, stream: stream)
        } catch let e as SLMError {
            // Name the object, never the signed URL.
            let object = "\(location)/\(key.map { String($0.dropFirst(prefix.isEmpty ? 0 : prefix.count + 1)) } ?? "")"
            throw e.mapKind {
                guard case let .transport(_, problem, transient) = $0 else { return $0 }
                return .transport(url: object, problem: problem, transient: transient)
            }
        }
        if let body { counter.sent(UInt64(body.count)) } else { counter.received(r.body.count + r.streamed) }
        return r
    }

    /// An error for an answer the operation cannot use, with S3's own code and message and,
    /// for authorization failures, which credentials were tried (never the secret).
    private func failure(_ r: HTTPResponse, _ what: String) -> SLMError {
        let text = String(decoding: r.body.prefix(4096), as: UTF8.self)
        let code = XMLText.first("Code", in: text) ?? ""
        let message = XMLText.first("Message", in: text) ?? ""
        var problem = [code, message].filter { !$0.isEmpty }.joined(separator: ": ")
        if r.status == 401 || r.status == 403 {
            problem += " (credentials: \(config.credentials?.source ?? "none; the request was anonymous"))"
        }
        return SLMError.remoteStatus(url: "\(location)/\(what)", status: r.status, problem: problem)
    }

    // MARK: StoreBackend

    /// GET of the whole object (nil on 404), refused above `limit` before its body is read.
    public func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let r = try send("GET", key: key(path), limit: max(limit, 64 << 10))
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw failure(r, path) }
        guard r.body.count <= limit else {
            throw SLMError.remote(url: "\(location)/\(path)", problem: "\(r.body.count) bytes, more than the \(limit) allowed")
        }
        try r.checkComplete("\(location)/\(path)")
        return r.body
    }

    /// GET of the whole object, streamed as it arrives.
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let what = "\(location)/\(path)"
        var delivered = 0
        // The request's limit leaves room for an error document; a 2xx body is held to `limit` here.
        let r = try withoutActuallyEscaping(consume) { consume in
            try send("GET", key: key(path), limit: max(limit, 64 << 10),
                     stream: HTTPClient.BodyStream(head: { r in
                         guard r.status == 200 else { throw self.failure(r, path) }
                     }, body: { piece in
                         delivered += piece.count
                         guard delivered <= limit else {
                             throw SLMError.remote(url: what, problem: "more than the \(limit) bytes allowed")
                         }
                         try consume(piece)
                     }))
        }
        if r.status == 404 { return false }
        guard r.status == 200 else { throw failure(r, path) }
        guard r.body.count + r.streamed <= limit else {
            throw SLMError.remote(url: what, problem: "\(r.body.count + r.streamed) bytes, more than the \(limit) allowed")
        }
        if let length = r.headers["content-length"], Int(length) != r.body.count + r.streamed {
            throw SLMError.transport(url: what, problem: "short body: \(r.body.count + r.streamed) of \(length) bytes", transient: true)
        }
        if !r.body.isEmpty { try r.body.withUnsafeBytes { try consume($0) } }
        return true
    }

    /// Ranged GET; the answer must be exactly the range asked for.
    public func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        let what = "\(location)/\(path)"
        let fail = { (r: HTTPResponse) in self.failure(r, path) }
        // The limit leaves room for an error document, so a 2xx body is held to the range here,
        // before a byte past it reaches the caller.
        var delivered = 0
        let r = try withoutActuallyEscaping(consume) { consume in
            try send("GET", key: key(path), headers: ["Range": "bytes=\(range.lowerBound)-\(range.upperBound - 1)"],
                     limit: max(Int(range.count), 64 << 10),
                     stream: HTTPClient.BodyStream(head: { try $0.checkRangeHead(range, what, failure: fail) }, body: { piece in
                         delivered += piece.count
                         guard delivered <= range.count else {
                             throw SLMError.remote(url: what, problem: "sent more than the \(range.count) bytes of range \(range.lowerBound)-\(range.upperBound - 1)")
                         }
                         try consume(piece)
                     }))
        }
        try r.checkRange(range, what, failure: fail)
    }

    /// GET with If-None-Match on the ETag from the last read.
    public func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead {
        var headers: [String: String] = [:]
        if let validator, validator.hasPrefix("etag:") { headers["If-None-Match"] = String(validator.dropFirst(5)) }
        let r = try send("GET", key: key(path), headers: headers, limit: max(limit, 64 << 10))
        if r.status == 304 { return .unchanged }
        if r.status == 404 { return .absent }
        guard r.status == 200 else { throw failure(r, path) }
        guard r.body.count <= limit else {
            throw SLMError.remote(url: "\(location)/\(path)", problem: "\(r.body.count) bytes, more than the \(limit) allowed")
        }
        try r.checkComplete("\(location)/\(path)")
        return .changed(bytes: r.body, validator: r.headers["etag"].map { "etag:" + $0 })
    }

    /// HEAD of the object.
    public func exists(_ path: String) throws -> Bool {
        let r = try send("HEAD", key: key(path), limit: 0)
        if r.status == 404 { return false }
        guard r.status == 200 else { throw failure(r, path) }
        return true
    }

    /// PUT of the object (S3 replaces objects whole).
    public func write(_ path: String, bytes: [UInt8]) throws {
        let r = try send("PUT", key: key(path), body: bytes, limit: 64 << 10)
        guard r.status == 200 else { throw failure(r, path) }
    }

    /// Conditional PUT: If-Match on the ETag, or If-None-Match: * to create; false when another
    /// writer came first.
    public func write(_ path: String, bytes: [UInt8], ifMatching expected: String?) throws -> Bool {
        var headers: [String: String] = [:]
        if let expected {
            guard expected.hasPrefix("etag:") else { return false }
            headers["If-Match"] = String(expected.dropFirst(5))
        } else {
            headers["If-None-Match"] = "*"
        }
        let r = try send("PUT", key: key(path), headers: headers, body: bytes, limit: 64 << 10)
        // 412: the condition failed; 409: a concurrent conditional write; 404: If-Match on a
        // key that is gone. Each means another writer came first.
        if r.status == 412 || r.status == 409 || (r.status == 404 && expected != nil) { return false }
        guard r.status == 200 else { throw failure(r, path) }
        return true
    }

    /// PUT of a local file; above the part size a multipart upload that resumes after a kill from a
    /// state file beside the local file.
    public func upload(_ path: String, fromFile localPath: String) throws {
        let file = try FileDescriptor.openForReading(localPath)
        let size = try file.size()
        if size <= UInt64(partSize) {
            try write(path, bytes: try file.pread(count: Int(size), at: 0))
            return
        }
        try MultipartUpload(backend: self, key: key(path), path: path, file: file, size: size, statePath: localPath + ".upload.json").run()
    }

    /// Listing asks only for keys that start with the store prefix's first segment and filters
    /// the rest here: some S3-compatible servers (moto among them) reject a signed query whose
    /// values contain "/", so neither the full prefix nor a "/" delimiter is sent.
    public func list(_ directory: String, recursive: Bool) throws -> [String] {
        try list(directory, recursive: recursive, limit: .max).paths
    }

    /// Pages until `limit` keys were found (then stops asking), the listing ends, or
    /// `listDeadline` seconds passed: an endless listing is an error within minutes, not hours.
    public func list(_ directory: String, recursive: Bool, limit: Int) throws -> (paths: [String], truncated: Bool) {
        let base = key(directory)
        let started = Timestamp.monotonicSeconds()
        let wanted = base.isEmpty ? "" : base + "/"
        let sent = String(wanted.prefix { $0 != "/" })
        let strip = prefix.isEmpty ? 0 : prefix.count + 1
        var found = Set<String>()
        var token: String? = nil
        var tokensSeen = Set<String>()
        var pages = 0
        repeat {
            // A listing that never ends (a repeated or missing token, or more pages than a store
            // of 10 million files has) is a broken or hostile endpoint, not a big store.
            pages += 1
            guard pages <= maxListPages else {
                throw SLMError.remote(url: "\(location)/\(directory)", problem: "listing has more than \(maxListPages) pages; refusing to page further")
            }
            guard Timestamp.monotonicSeconds() - started <= listDeadline else {
                throw SLMError.remote(url: "\(location)/\(directory)", problem: "listing still not finished after \(Int(listDeadline)) s (\(pages - 1) pages); refusing to page further")
            }
            var query: [(String, String)] = [("list-type", "2")]
            if !sent.isEmpty { query.append(("prefix", sent)) }
            if let token { query.append(("continuation-token", token)) }
            let r = try send("GET", key: nil, query: query, limit: 16 << 20)
            guard r.status == 200 else { throw failure(r, directory.isEmpty ? "(listing)" : directory + "/") }
            let text = String(decoding: r.body, as: UTF8.self)
            for k in XMLText.all("Key", in: text) where k.hasPrefix(wanted) && k.count > wanted.count {
                var rel = String(k.dropFirst(wanted.count))
                if !recursive, let slash = rel.firstIndex(of: "/") { rel = String(rel[..<slash]) }
                guard !FileSystem.basename(rel).hasPrefix(".") else { continue }
                found.insert(String((wanted + rel).dropFirst(strip)))
            }
            if found.count >= limit {
                let sorted = found.sorted()
                return (Array(sorted.prefix(limit)), true)
            }
            if XMLText.first("IsTruncated", in: text) == "true" {
                guard let next = XMLText.first("NextContinuationToken", in: text), !next.isEmpty else {
                    throw SLMError.remote(url: "\(location)/\(directory)", problem: "listing is truncated but names no continuation token")
                }
                guard tokensSeen.insert(next).inserted else {
                    throw SLMError.remote(url: "\(location)/\(directory)", problem: "listing repeats continuation token \(next.prefix(64)) (it would page forever)")
                }
                token = next
            } else {
                token = nil
            }
        } while token != nil
        return (found.sorted(), false)
    }

    /// DELETE of the object (absent is fine).
    public func delete(_ path: String) throws {
        let r = try send("DELETE", key: key(path), limit: 64 << 10)
        guard r.status == 204 || r.status == 200 || r.status == 404 else { throw failure(r, path) }
    }

    /// None: a bucket has no collector to hold off.
    public func publishLease() throws -> AnyObject? { nil }

    // MARK: Multipart

    /// One multipart upload of a local file. Its state (upload id, finished parts with their
    /// ETags) is saved after every part, so a killed upload resumes without re-sending them.
    struct MultipartUpload {
        let backend: S3Backend
        let key: String
        let path: String
        let file: FileDescriptor
        let size: UInt64
        let statePath: String

        struct State {
            var key: String
            var size: UInt64
            var partSize: Int
            var uploadID: String
            var etags: [Int: String]

            var json: JSONValue {
                .object(["key": .string(key), "size": .int(size), "part_size": .int(UInt64(partSize)), "upload_id": .string(uploadID),
                         "parts": .object(Dictionary(uniqueKeysWithValues: etags.map { (String($0.key), JSONValue.string($0.value)) }))])
            }

            static func load(_ path: String) -> State? {
                // A state file that cannot be read only costs re-sending the parts.
                guard let v = JSONValue.readCacheDocument(path, limit: 1 << 20), let key = v["key"]?.stringValue, let size = v["size"]?.uint64Value, let part = v["part_size"]?.uint64Value,
                      let id = v["upload_id"]?.stringValue else { return nil }
                var etags: [Int: String] = [:]
                for (n, e) in v["parts"]?.objectValue ?? [:] { if let n = Int(n), let e = e.stringValue { etags[n] = e } }
                return State(key: key, size: size, partSize: Int(part), uploadID: id, etags: etags)
            }

            func save(_ path: String) throws { try FileSystem.writeAtomically(json.canonicalBytes(), to: path) }
        }

        func run() throws {
            var state: State
            if let saved = State.load(statePath), saved.key == key, saved.size == size, saved.partSize == backend.partSize {
                state = saved
            } else {
                state = State(key: key, size: size, partSize: backend.partSize, uploadID: try create(), etags: [:])
                try state.save(statePath)
            }
            let parts = Int((size + UInt64(state.partSize) - 1) / UInt64(state.partSize))
            // Parts go up a few at a time (each worker holds one part in memory); every finished
            // part is saved before the next is counted, so a kill loses at most the parts in flight.
            let pending = (1...parts).filter { state.etags[$0] == nil }
            let shared = Mutex((state: state, next: 0, failure: nil as Error?, restart: false))
            let uploadID = state.uploadID, partSize = state.partSize
            DispatchQueue.concurrentPerform(iterations: min(4, max(1, pending.count))) { _ in
                while true {
                    guard let n = shared.withLock({ s -> Int? in
                        guard s.failure == nil, !s.restart, s.next < pending.count else { return nil }
                        s.next += 1
                        return pending[s.next - 1]
                    }) else { return }
                    do {
                        let offset = UInt64(n - 1) * UInt64(partSize)
                        let bytes = try file.pread(count: Int(min(UInt64(partSize), size - offset)), at: offset)
                        let r = try backend.send("PUT", key: key, query: [("partNumber", String(n)), ("uploadId", uploadID)], body: bytes, limit: 64 << 10)
                        if r.status == 404 {
                            shared.withLock { $0.restart = true }
                            return
                        }
                        guard r.status == 200, let etag = r.headers["etag"] else { throw backend.failure(r, path) }
                        try shared.withLock { s in
                            s.state.etags[n] = etag
                            try s.state.save(statePath)
                        }
                        CrashPoint.hit("push-after-part")
                    } catch {
                        shared.withLock { if $0.failure == nil { $0.failure = error } }
                        return
                    }
                }
            }
            let outcome = shared.withLock { $0 }
            if outcome.restart {
                // The upload was aborted or expired on the server: start again from part 1.
                FileSystem.remove(statePath)
                return try run()
            }
            if let failure = outcome.failure { throw failure }
            state = outcome.state
            var body = "<CompleteMultipartUpload>"
            for n in 1...parts {
                guard let etag = state.etags[n] else {
                    throw SLMError.failed("\(statePath): part \(n) of \(path) has no ETag after the upload; push again")
                }
                body += "<Part><PartNumber>\(n)</PartNumber><ETag>\(XMLText.escape(etag))</ETag></Part>"
            }
            body += "</CompleteMultipartUpload>"
            let r = try backend.send("POST", key: key, query: [("uploadId", state.uploadID)], headers: ["Content-Type": "application/xml"],
                                     body: Array(body.utf8), limit: 1 << 20)
            // S3 may answer 200 and still report an error in the body.
            let text = String(decoding: r.body, as: UTF8.self)
            guard r.status == 200, !text.contains("<Error>") else { throw backend.failure(r, path) }
            FileSystem.remove(statePath)
        }

        private func create() throws -> String {
            let r = try backend.send("POST", key: key, query: [("uploads", "")], body: [], limit: 1 << 20)
            guard r.status == 200, let id = XMLText.first("UploadId", in: String(decoding: r.body, as: UTF8.self)), !id.isEmpty else {
                throw backend.failure(r, path)
            }
            return id
        }
    }
}

/// Just enough XML for S3's answers: the text of named elements, entities decoded.
enum XMLText {
    static func all(_ tag: String, in text: String) -> [String] {
        var out: [String] = []
        var rest = text[...]
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            out.append(unescape(String(rest[open.upperBound..<close.lowerBound])))
            rest = rest[close.upperBound...]
        }
        return out
    }

    static func first(_ tag: String, in text: String) -> String? { all(tag, in: text).first }

    static func unescape(_ s: String) -> String {
        s.replacingOccurrences(of: "&quot;", with: "\"").replacingOccurrences(of: "&apos;", with: "'")
            .replacingOccurrences(of: "&lt;", with: "<").replacingOccurrences(of: "&gt;", with: ">")
            .replacingOccurrences(of: "&#34;", with: "\"").replacingOccurrences(of: "&amp;", with: "&")
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }
}
