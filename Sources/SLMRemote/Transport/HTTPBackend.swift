// A store directory served by any static web server (nginx, a CDN, a public bucket): read-only,
// whole files and byte ranges, with conditional GETs for the manifest. Every status and length
// the server sends is checked before a byte of the body is believed.

import SLMFormats
import SLMLocalStore
import Foundation

/// A store directory served over http(s) by any static web server: read-only.
public final class HTTPBackend: ReadableBackend {
    /// The remote's URL without credentials.
    public let base: URL
    let client: HTTPClient
    let credentials: HTTPCredentials?
    private let counter = TrafficCounter()

    /// A user:password in `base` is used as credentials unless `credentials` are given.
    public init(base: URL, credentials: HTTPCredentials? = nil, policy: HTTPClient.Policy = HTTPClient.Policy()) {
        self.base = URL(string: HTTPCredentials.redact(base.absoluteString)) ?? base
        self.credentials = credentials ?? HTTPCredentials.userInfo(of: base)
        client = HTTPClient(policy: policy)
    }

    /// The URL, without credentials.
    public var location: String { base.absoluteString }

    private func perform(_ u: URL, method: String = "GET", headers: [String: String] = [:], limit: Int,
                         stream: HTTPClient.BodyStream? = nil) throws -> HTTPResponse {
        var h = headers
        if let credentials { h["Authorization"] = credentials.authorization }
        let r = try client.perform(u, method: method, headers: h, limit: limit, stream: stream)
        // A refusal of credentials is final: retrying with the same ones cannot help.
        if r.status == 401 || (r.status == 403 && credentials != nil) {
            guard let credentials else {
                throw SLMError.remoteStatus(url: u.absoluteString, status: r.status, problem: "authentication failed: no credentials were sent")
                    .remedied(by: .sendCredentials)
            }
            throw SLMError.remoteStatus(url: u.absoluteString, status: r.status,
                                        problem: "authentication failed: credentials from \(credentials.source) were refused")
        }
        return r
    }
    /// Bytes and requests so far.
    public var traffic: Traffic { counter.snapshot }

    func url(_ path: String) -> URL { URL(string: base.absoluteString + "/" + path)! }

    private func get(_ path: String, headers: [String: String] = [:], limit: Int) throws -> (URL, HTTPResponse) {
        let u = url(path)
        let r = try perform(u, headers: headers, limit: limit)
        counter.received(r.body.count)
        return (u, r)
    }

    /// A missing file; public buckets answer 403 rather than 404 for keys that do not exist.
    private func isAbsent(_ status: Int, _ path: String) -> Bool { status == 404 || (status == 403 && path.hasPrefix("refs/")) }

    /// GET of the whole file (nil on 404), refused above `limit` before its body is read.
    public func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let (u, r) = try get(path, limit: limit)
        if isAbsent(r.status, path) { return nil }
        guard r.status == 200 else { throw SLMError.remoteStatus(url: u.absoluteString, status: r.status, problem: "") }
        try r.checkComplete(u.absoluteString)
        return r.body
    }

    /// GET of the whole file, streamed as it arrives.
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        let u = url(path)
        let what = u.absoluteString
        let r = try withoutActuallyEscaping(consume) { consume in
            try perform(u, limit: limit, stream: HTTPClient.BodyStream(head: { r in
                guard r.status == 200 else { throw SLMError.remoteStatus(url: what, status: r.status, problem: "") }
            }, body: consume))
        }
        counter.received(r.body.count + r.streamed)
        if isAbsent(r.status, path) { return false }
        guard r.status == 200 else { throw SLMError.remoteStatus(url: what, status: r.status, problem: "") }
        if let length = r.headers["content-length"], Int(length) != r.body.count + r.streamed {
            throw SLMError.transport(url: what, problem: "short body: \(r.body.count + r.streamed) of \(length) bytes", transient: true)
        }
        // A 200 with an empty body never reaches the stream's head; one read whole is handed over here.
        if !r.body.isEmpty { try r.body.withUnsafeBytes { try consume($0) } }
        return true
    }

    /// HEAD of the file.
    public func exists(_ path: String) throws -> Bool {
        let u = url(path)
        let r = try perform(u, method: "HEAD", limit: 0)
        counter.received(0)
        if isAbsent(r.status, path) { return false }
        guard r.status == 200 else { throw SLMError.remoteStatus(url: u.absoluteString, status: r.status, problem: "") }
        return true
    }

    /// GET with If-None-Match (ETag) or If-Modified-Since (Last-Modified), whichever the server
    /// gave last.
    public func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead {
        var headers: [String: String] = [:]
        if let validator {
            if validator.hasPrefix("etag:") { headers["If-None-Match"] = String(validator.dropFirst(5)) }
            else if validator.hasPrefix("date:") { headers["If-Modified-Since"] = String(validator.dropFirst(5)) }
        }
        let (u, r) = try get(path, headers: headers, limit: limit)
        if r.status == 304 { return .unchanged }
        if r.status == 404 { return .absent }
        guard r.status == 200 else { throw SLMError.remoteStatus(url: u.absoluteString, status: r.status, problem: "") }
        try r.checkComplete(u.absoluteString)
        var v = r.headers["etag"].map { "etag:" + $0 } ?? r.headers["last-modified"].map { "date:" + $0 }
        // Servers like nginx derive validators from a one-second mtime: a manifest replaced again
        // within the second it was served would look unchanged. Only trust a validator for a file
        // that was already at least two seconds old when it was served.
        if let lm = r.headers["last-modified"].flatMap(Timestamp.parseHTTPDate), let now = r.headers["date"].flatMap(Timestamp.parseHTTPDate),
           now - lm < 2 {
            v = nil
        } else if r.headers["last-modified"] == nil || r.headers["date"] == nil, !(r.headers["etag"]?.hasPrefix("\"") ?? false) {
            v = nil
        }
        return .changed(bytes: r.body, validator: v)
    }

    /// GET with a Range header; the answer must be 206 with exactly that range.
    public func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        let span = "\(range.lowerBound)-\(range.upperBound - 1)"
        let u = url(path)
        let what = u.absoluteString
        let failure = { (r: HTTPResponse) in SLMError.remoteStatus(url: what, status: r.status, problem: "for a range request") }
        let r: HTTPResponse
        do {
            r = try withoutActuallyEscaping(consume) { consume in
                try perform(u, headers: ["Range": "bytes=\(span)"], limit: Int(range.count),
                            stream: HTTPClient.BodyStream(head: { try $0.checkRangeHead(range, what, failure: failure) }, body: consume))
            }
        } catch let e as SLMError {
            throw e.mapKind {
                guard case let .transport(url, problem, transient) = $0 else { return $0 }
                return .transport(url: url, problem: "range \(span): \(problem)", transient: transient)
            }
        }
        counter.received(r.body.count + r.streamed)
        try r.checkRange(range, what, failure: failure)
    }
}
