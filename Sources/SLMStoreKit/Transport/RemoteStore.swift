// A remote is a store directory reached by path or over HTTP(S) from any static server. It is
// read through two operations only: fetch a whole small file, and fetch a byte range of a pack.

import Foundation

public protocol RemoteStore: AnyObject, Sendable {
    /// The URL or path the user gave, for messages.
    var location: String { get }
    /// The whole file at `path` (relative to the store root), or nil if it does not exist.
    /// More than `limit` bytes is an error.
    func fetch(_ path: String, limit: Int) throws -> [UInt8]?
    /// Exactly the bytes `range` of the file at `path`; anything else is an error.
    func fetchRange(_ path: String, range: Range<UInt64>) throws -> [UInt8]
    /// A conditional GET: nil when the file is unchanged since `validator` (an ETag, a
    /// Last-Modified date, or for paths the size and mtime), else the bytes and a new validator.
    func fetchIfChanged(_ path: String, validator: String?, limit: Int) throws -> (bytes: [UInt8], validator: String?)?
    /// Traffic so far: body bytes received and requests made.
    var bytesReceived: UInt64 { get }
    var requests: Int { get }
}

public enum Remotes {
    /// A remote from what the user typed: http(s) URL or a filesystem path.
    public static func open(_ location: String, maxBytesPerSecond: Double = 0) throws -> RemoteStore {
        if location.hasPrefix("http://") || location.hasPrefix("https://") {
            guard let url = URL(string: location.hasSuffix("/") ? String(location.dropLast()) : location) else {
                throw SLMError.argument("invalid remote URL \"\(location)\"")
            }
            let r = HTTPRemote(base: url)
            r.client.maxBytesPerSecond = maxBytesPerSecond
            return r
        }
        if location.contains("://") { throw SLMError.argument("unsupported remote \"\(location)\": use a path, http:// or https://") }
        return PathRemote(root: location)
    }
}

/// Counts traffic; shared by the remote kinds.
final class TrafficCounter: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var bytes: UInt64 = 0
    private(set) var requests = 0

    func record(_ n: Int) {
        lock.lock()
        bytes += UInt64(n)
        requests += 1
        lock.unlock()
    }
}

public final class PathRemote: RemoteStore, @unchecked Sendable {
    public let root: String
    private let counter = TrafficCounter()

    public init(root: String) { self.root = root }

    public var location: String { root }
    public var bytesReceived: UInt64 { counter.bytes }
    public var requests: Int { counter.requests }

    public func fetch(_ path: String, limit: Int) throws -> [UInt8]? {
        let full = root + "/" + path
        guard FileSystem.exists(full) else { return nil }
        let bytes = try FileSystem.readFile(full, limit: limit)
        counter.record(bytes.count)
        return bytes
    }

    public func fetchIfChanged(_ path: String, validator: String?, limit: Int) throws -> (bytes: [UInt8], validator: String?)? {
        let full = root + "/" + path
        var st = stat()
        guard stat(full, &st) == 0 else { throw SLMError.remote(url: full, problem: "not found") }
        let v = "\(st.st_size)-\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec)-\(st.st_ino)"
        if v == validator { counter.record(0); return nil }
        guard let bytes = try fetch(path, limit: limit) else { throw SLMError.remote(url: full, problem: "not found") }
        return (bytes, v)
    }

    public func fetchRange(_ path: String, range: Range<UInt64>) throws -> [UInt8] {
        let full = root + "/" + path
        let file = try FileDescriptor.openForReading(full)
        let bytes = try file.pread(count: Int(range.count), at: range.lowerBound)
        counter.record(bytes.count)
        return bytes
    }
}

public final class HTTPRemote: RemoteStore, @unchecked Sendable {
    public let base: URL
    let client = HTTPClient()
    private let counter = TrafficCounter()

    public init(base: URL) { self.base = base }

    public var location: String { base.absoluteString }
    public var bytesReceived: UInt64 { counter.bytes }
    public var requests: Int { counter.requests }

    func url(_ path: String) -> URL { URL(string: base.absoluteString + "/" + path)! }

    public func fetch(_ path: String, limit: Int) throws -> [UInt8]? {
        let u = url(path)
        let r: HTTPResponse
        do { r = try client.get(u, limit: limit) } catch let e as HTTPClient.Failure {
            throw SLMError.remote(url: u.absoluteString, problem: Self.describe(e))
        }
        counter.record(r.body.count)
        if r.status == 404 || r.status == 403 && path.hasPrefix("refs/") { return nil }
        guard r.status == 200 else { throw SLMError.remote(url: u.absoluteString, problem: "HTTP \(r.status)") }
        if let length = r.headers["content-length"], Int(length) != r.body.count {
            throw SLMError.remote(url: u.absoluteString, problem: "short body: \(r.body.count) of \(length) bytes")
        }
        return r.body
    }

    public func fetchIfChanged(_ path: String, validator: String?, limit: Int) throws -> (bytes: [UInt8], validator: String?)? {
        let u = url(path)
        var headers: [String: String] = [:]
        if let validator {
            if validator.hasPrefix("etag:") { headers["If-None-Match"] = String(validator.dropFirst(5)) }
            else if validator.hasPrefix("date:") { headers["If-Modified-Since"] = String(validator.dropFirst(5)) }
        }
        let r: HTTPResponse
        do { r = try client.get(u, headers: headers, limit: limit) } catch let e as HTTPClient.Failure {
            throw SLMError.remote(url: u.absoluteString, problem: Self.describe(e))
        }
        counter.record(r.body.count)
        if r.status == 304 { return nil }
        guard r.status == 200 else { throw SLMError.remote(url: u.absoluteString, problem: "HTTP \(r.status)") }
        var v = r.headers["etag"].map { "etag:" + $0 } ?? r.headers["last-modified"].map { "date:" + $0 }
        // Servers like nginx derive validators from a one-second mtime: a manifest replaced again
        // within the second it was served would look unchanged. Only trust a validator for a file
        // that was already at least two seconds old when it was served.
        if let lm = r.headers["last-modified"].flatMap(Self.httpDate), let now = r.headers["date"].flatMap(Self.httpDate),
           now.timeIntervalSince(lm) < 2 {
            v = nil
        } else if r.headers["last-modified"] == nil || r.headers["date"] == nil, !(r.headers["etag"]?.hasPrefix("\"") ?? false) {
            v = nil
        }
        return (r.body, v)
    }

    public func fetchRange(_ path: String, range: Range<UInt64>) throws -> [UInt8] {
        let u = url(path)
        let r: HTTPResponse
        do {
            r = try client.get(u, headers: ["Range": "bytes=\(range.lowerBound)-\(range.upperBound - 1)"], limit: Int(range.count))
        } catch let e as HTTPClient.Failure {
            throw SLMError.remote(url: u.absoluteString, problem: "range \(range.lowerBound)-\(range.upperBound - 1): \(Self.describe(e))")
        }
        counter.record(r.body.count)
        if r.status == 200 {
            throw SLMError.remote(url: u.absoluteString, problem: "server ignored the Range header (answered 200 with the whole file)")
        }
        guard r.status == 206 else { throw SLMError.remote(url: u.absoluteString, problem: "HTTP \(r.status) for a range request") }
        guard r.body.count == range.count else {
            throw SLMError.remote(url: u.absoluteString, problem: "range \(range.lowerBound)-\(range.upperBound - 1): got \(r.body.count) bytes, expected \(range.count)")
        }
        if let cr = r.headers["content-range"], !cr.hasPrefix("bytes \(range.lowerBound)-\(range.upperBound - 1)/") {
            throw SLMError.remote(url: u.absoluteString, problem: "Content-Range \"\(cr)\" does not match the request")
        }
        return r.body
    }

    static func httpDate(_ s: String) -> Date? {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        return f.date(from: s)
    }

    static func describe(_ e: HTTPClient.Failure) -> String {
        switch e {
        case let .transient(m), let .permanent(m): return m
        }
    }
}
