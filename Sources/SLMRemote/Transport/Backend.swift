// The two interfaces push, pull and sync use to reach a store's files wherever they live (a
// directory, a static web server, object storage): reading, which every remote offers, and
// writing, which a plain web server does not (as desync's Store and WriteStore). Retry and rate
// limits are wrappers any backend gets, so each backend only says how to move bytes.

import SLMFormats
import SLMLocalStore
import Foundation
import Synchronization

/// Traffic a backend has carried so far.
public struct Traffic: Sendable, Equatable {
    /// Bytes received (response bodies).
    public var bytesReceived: UInt64 = 0
    /// Bytes sent (request bodies).
    public var bytesSent: UInt64 = 0
    /// Requests made.
    public var requests = 0

    /// No traffic.
    public init() {}

    /// What happened between `earlier` and this snapshot.
    public func since(_ earlier: Traffic) -> Traffic {
        var t = Traffic()
        t.bytesReceived = bytesReceived - earlier.bytesReceived
        t.bytesSent = bytesSent - earlier.bytesSent
        t.requests = requests - earlier.requests
        return t
    }
}

/// The answer to a conditional read.
public enum ConditionalRead: Sendable {
    /// The file still has the validator the caller gave.
    case unchanged
    /// There is no such file.
    case absent
    /// The file's bytes and a validator for the next conditional read, when the backend can
    /// offer a trustworthy one.
    case changed(bytes: [UInt8], validator: String?)
}

/// A remote store that can be read: what pull, sync and a device's checks need. Every kind of
/// remote is one; a static web server is only this.
public protocol ReadableBackend: AnyObject, Sendable {
    /// The URL or path the user gave, for messages (never holds credentials).
    var location: String { get }
    /// The bytes and requests carried so far.
    var traffic: Traffic { get }

    /// The whole file at `path` (relative to the store root), or nil when there is none.
    /// A file larger than `limit` is an error, found before it is read whole.
    func read(_ path: String, limit: Int) throws -> [UInt8]?
    /// Exactly the bytes `range` of the file at `path`, handed to `consume` in order, in pieces
    /// of any size as they arrive (so a caller holds what it has not consumed yet, not the
    /// range); anything else is an error. After an error `consume` has seen a prefix of the range.
    func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws
    /// The whole file at `path`, handed to `consume` in order in pieces as it arrives (false,
    /// and nothing consumed, when there is none). More than `limit` bytes is an error, raised
    /// before a byte past the limit reaches `consume`. After an error `consume` has seen a prefix.
    func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool
    /// A read that answers `.unchanged` cheaply when the file still has `validator`.
    func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead
    /// Whether a file is at `path`.
    func exists(_ path: String) throws -> Bool
}

/// A remote store that can also be written, listed and cleaned: what push, `fleet --apply`,
/// `resign` and reports into the remote need. A directory and an S3 bucket are one.
public protocol StoreBackend: ReadableBackend {

    /// Replaces (or creates) the file so a reader sees the old bytes or the new, never a part.
    func write(_ path: String, bytes: [UInt8]) throws
    /// Like `write`, streaming the bytes of a local file (packs are too large to hold).
    func upload(_ path: String, fromFile localPath: String) throws
    /// Compare-and-swap: writes only while the file still has `expected` as its validator
    /// (`nil`: only while it does not exist). False when another writer came first.
    func write(_ path: String, bytes: [UInt8], ifMatching expected: String?) throws -> Bool
    /// Paths (relative to the store root) of the files below `directory`; `recursive: false`
    /// lists its direct entries, directories included.
    func list(_ directory: String, recursive: Bool) throws -> [String]
    /// At most `limit` paths below `directory` (which ones, when there are more, is the
    /// backend's order), and whether more were there: a listing of a directory that others can
    /// write (reports/) is bounded by what the reader expects, never by what a writer put there.
    func list(_ directory: String, recursive: Bool, limit: Int) throws -> (paths: [String], truncated: Bool)
    /// Removes the file at `path` (absent is not an error).
    func delete(_ path: String) throws
    /// Held by a publisher from its first write to its last, so that a garbage collector working
    /// on the same store never takes the publisher's new packs for dead ones (nil: the backend
    /// has no such collector).
    func publishLease() throws -> AnyObject?
}

extension StoreBackend {
    /// A listing cut at `limit` after the whole was read (a directory: reading its names costs
    /// little; a bucket pages and stops on its own).
    public func list(_ directory: String, recursive: Bool, limit: Int) throws -> (paths: [String], truncated: Bool) {
        let all = try list(directory, recursive: recursive)
        return (Array(all.prefix(limit)), all.count > limit)
    }
}

extension ReadableBackend {
    /// For backends that cannot stream a whole file: read it whole, then hand it over.
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        guard let bytes = try read(path, limit: limit) else { return false }
        try bytes.withUnsafeBytes { try consume($0) }
        return true
    }

    /// The version id the ref file at `path` names, nil when there is none (a ref file is at most
    /// 4 KiB; one that does not parse is damaged).
    public func readRef(_ path: String) throws -> SHA256Digest? {
        try read(path, limit: 4096).map { try Store.parseRefFile($0, source: "\(location)/\(path)") }
    }

    /// Exactly the bytes `range` of the file at `path`, whole.
    public func readRange(_ path: String, range: Range<UInt64>) throws -> [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(range.count))
        try readRange(path, range: range) { bytes.append(contentsOf: $0) }
        return bytes
    }
}

/// Counts traffic; shared by the backend kinds.
final class TrafficCounter: Sendable {
    private let state = Mutex(Traffic())

    func received(_ n: Int) { state.withLock { $0.bytesReceived += UInt64(n); $0.requests += 1 } }
    func sent(_ n: UInt64) { state.withLock { $0.bytesSent += n; $0.requests += 1 } }
    var snapshot: Traffic { state.withLock { $0 } }
}

// MARK: Wrappers

/// How often and how patiently `Retrying` tries.
public struct RetryPolicy: Sendable {
    /// Tries in a row that fail transiently before giving up.
    public var attempts = 5
    /// Seconds before the first retry (doubled each time, with jitter).
    public var initialBackoff = 0.2
    /// The longest wait between tries, in seconds.
    public var maxBackoff = 5.0
    /// Five tries, 0.2 s doubling up to 5 s.
    public init() {}
}

/// Retries transient failures (network errors, 5xx, 429, 408) with exponential backoff and
/// jitter; anything else fails at once. Stops waiting as soon as `isCancelled` says so. Writable
/// exactly when `Base` is (a conditional conformance), so wrapping a read-only remote stays
/// read-only.
public final class Retrying<Base: ReadableBackend>: ReadableBackend {
    /// How often and how patiently to try.
    public typealias Policy = RetryPolicy

    let reader: Base
    let policy: Policy
    let isCancelled: @Sendable () -> Bool
    let onRetry: @Sendable (Int, SLMError) -> Void

    /// Wraps `reader`; `onRetry` hears of each failed attempt that will be tried again.
    public init(_ reader: Base, policy: Policy = Policy(), isCancelled: @escaping @Sendable () -> Bool = { false },
                onRetry: @escaping @Sendable (Int, SLMError) -> Void = { _, _ in }) {
        self.reader = reader
        self.policy = policy
        self.isCancelled = isCancelled
        self.onRetry = onRetry
    }

    /// The wrapped remote's location.
    public var location: String { reader.location }
    /// The wrapped remote's traffic.
    public var traffic: Traffic { reader.traffic }

    /// Runs `body` until it succeeds, fails for good, or fails transiently `policy.attempts`
    /// times in a row. `progress` reports how far a streaming read got: an attempt that moved it
    /// forward (by 64 KiB or more) before failing starts the count and the backoff again, so a link that keeps being
    /// cut but keeps delivering (a flaky cellular link) finishes instead of running out of tries.
    func attempt<T>(progress: () -> UInt64 = { 0 }, _ body: () throws -> T) throws -> T {
        var delay = policy.initialBackoff
        var attempt = 1
        var lastProgress = progress()
        while true {
            if isCancelled() { throw SLMError.cancelled }
            do {
                return try body()
            } catch let error as SLMError where error.isTransient {
                // At least 64 KiB: a hostile server cannot buy endless tries a byte at a time.
                if progress() >= lastProgress + (64 << 10) {
                    lastProgress = progress()
                    (attempt, delay) = (1, policy.initialBackoff)
                }
                guard attempt < policy.attempts else {
                    // The failing request's own URL is the one to name (once, not behind the remote's).
                    if case let .transport(url, problem, _) = error.kind {
                        throw SLMError.transport(url: url, problem: "\(problem) (after \(policy.attempts) attempts)", transient: true)
                    }
                    throw SLMError.transport(url: reader.location, problem: "\(error.description) (after \(policy.attempts) attempts)",
                                             transient: true)
                }
                onRetry(attempt, error)
                let deadline = Date().addingTimeInterval(delay * Double.random(in: 0.5...1.5))
                while Date() < deadline {
                    if isCancelled() { throw SLMError.cancelled }
                    Thread.sleep(forTimeInterval: min(0.05, max(0, deadline.timeIntervalSinceNow)))
                }
                delay = min(delay * 2, policy.maxBackoff)
                attempt += 1
            }
        }
    }

    /// The wrapped read, retried.
    public func read(_ path: String, limit: Int) throws -> [UInt8]? { try attempt { try reader.read(path, limit: limit) } }
    /// A retry asks only for what the failed attempt did not deliver, so `consume` sees each
    /// byte of the range once, in order.
    public func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        var at = range.lowerBound
        try attempt(progress: { at }) {
            guard at < range.upperBound else { return }
            try reader.readRange(path, range: at..<range.upperBound) { piece in
                try consume(piece)
                at += UInt64(piece.count)
            }
        }
    }
    /// A retried attempt starts the file again: the bytes an earlier one already handed over
    /// are skipped, so `consume` sees the file once (callers check what they stream by hash).
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        var delivered = 0
        return try attempt(progress: { UInt64(delivered) }) {
            var seen = 0
            return try reader.readStream(path, limit: limit) { piece in
                let skip = min(piece.count, max(0, delivered - seen))
                seen += piece.count
                guard skip < piece.count else { return }
                try consume(UnsafeRawBufferPointer(rebasing: piece[skip...]))
                delivered += piece.count - skip
            }
        }
    }

    /// The wrapped conditional read, retried.
    public func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead {
        try attempt { try reader.readIfChanged(path, validator: validator, limit: limit) }
    }
    /// The wrapped check, retried.
    public func exists(_ path: String) throws -> Bool { try attempt { try reader.exists(path) } }
}

/// Over a writable remote, writes are retried the same way.
extension Retrying: StoreBackend where Base: StoreBackend {
    private var inner: Base { reader }

    /// The wrapped write, retried (it replaces the whole file, so a repeat is harmless).
    public func write(_ path: String, bytes: [UInt8]) throws { try attempt { try inner.write(path, bytes: bytes) } }
    /// The wrapped upload, retried.
    public func upload(_ path: String, fromFile localPath: String) throws { try attempt { try inner.upload(path, fromFile: localPath) } }
    /// The wrapped compare-and-swap, retried.
    public func write(_ path: String, bytes: [UInt8], ifMatching expected: String?) throws -> Bool {
        // A lost answer to a write that did succeed reads as a conflict on the retry; callers of
        // compare-and-swap re-read and merge on conflict anyway, so that is safe.
        try attempt { try inner.write(path, bytes: bytes, ifMatching: expected) }
    }
    /// The wrapped listing, retried.
    public func list(_ directory: String, recursive: Bool) throws -> [String] { try attempt { try inner.list(directory, recursive: recursive) } }
    /// The wrapped bounded listing, retried.
    public func list(_ directory: String, recursive: Bool, limit: Int) throws -> (paths: [String], truncated: Bool) {
        try attempt { try inner.list(directory, recursive: recursive, limit: limit) }
    }
    /// The wrapped delete, retried.
    public func delete(_ path: String) throws { try attempt { try inner.delete(path) } }
    /// The wrapped remote's lease (not retried: taking it is local).
    public func publishLease() throws -> AnyObject? { try inner.publishLease() }
}

/// Limits the average transfer rate across every transfer made through it (writes too, over a
/// writable remote: writable exactly when `Base` is).
public final class RateLimited<Base: ReadableBackend>: ReadableBackend {
    let reader: Base
    let bytesPerSecond: Double
    let isCancelled: @Sendable () -> Bool
    private let budget: Mutex<(start: Date, bytes: Double)>

    /// Wraps `reader` at `bytesPerSecond` on average (0: no limit).
    public init(_ reader: Base, bytesPerSecond: Double, isCancelled: @escaping @Sendable () -> Bool = { false }) {
        self.reader = reader
        self.bytesPerSecond = bytesPerSecond
        self.isCancelled = isCancelled
        budget = Mutex((Date(), 0))
    }

    /// The wrapped remote's location.
    public var location: String { reader.location }
    /// The wrapped remote's traffic.
    public var traffic: Traffic { reader.traffic }

    /// Sleeps until `n` more bytes fit the rate (checked in small steps, so a cancel is quick).
    func pace(_ n: Int) throws {
        guard bytesPerSecond > 0, n > 0 else { return }
        let due = budget.withLock { b -> Double in
            b.bytes += Double(n)
            return b.bytes / bytesPerSecond - Date().timeIntervalSince(b.start)
        }
        let until = Date().addingTimeInterval(due)
        while Date() < until {
            if isCancelled() { throw SLMError.cancelled }
            Thread.sleep(forTimeInterval: min(0.05, max(0, until.timeIntervalSinceNow)))
        }
    }

    /// The wrapped read, paced by its size.
    public func read(_ path: String, limit: Int) throws -> [UInt8]? {
        let b = try reader.read(path, limit: limit)
        try pace(b?.count ?? 0)
        return b
    }
    /// The wrapped range read, paced as the bytes arrive.
    public func readRange(_ path: String, range: Range<UInt64>, into consume: (UnsafeRawBufferPointer) throws -> Void) throws {
        // Large ranges are paced in slices so the rate holds within one request too.
        let slice: UInt64 = max(64 << 10, UInt64(bytesPerSecond / 4))
        var at = range.lowerBound
        while at < range.upperBound {
            let end = bytesPerSecond > 0 ? min(range.upperBound, at + slice) : range.upperBound
            try reader.readRange(path, range: at..<end, into: consume)
            try pace(Int(end - at))
            at = end
        }
    }
    /// The wrapped stream, paced as the bytes arrive.
    public func readStream(_ path: String, limit: Int, into consume: (UnsafeRawBufferPointer) throws -> Void) throws -> Bool {
        try reader.readStream(path, limit: limit) { piece in
            try consume(piece)
            try pace(piece.count)
        }
    }
    /// The wrapped conditional read, paced by what it returned.
    public func readIfChanged(_ path: String, validator: String?, limit: Int) throws -> ConditionalRead {
        let r = try reader.readIfChanged(path, validator: validator, limit: limit)
        if case let .changed(bytes, _) = r { try pace(bytes.count) }
        return r
    }
    /// The wrapped check (too small to pace).
    public func exists(_ path: String) throws -> Bool { try reader.exists(path) }
}

/// Over a writable remote, what is written counts against the rate too.
extension RateLimited: StoreBackend where Base: StoreBackend {
    private var inner: Base { reader }

    /// The wrapped write, paced by its size.
    public func write(_ path: String, bytes: [UInt8]) throws { try pace(bytes.count); try inner.write(path, bytes: bytes) }
    /// The wrapped upload, paced by the file's size.
    public func upload(_ path: String, fromFile localPath: String) throws {
        try pace(Int(FileSystem.fileSize(localPath) ?? 0))
        try inner.upload(path, fromFile: localPath)
    }
    /// The wrapped compare-and-swap, paced by its size.
    public func write(_ path: String, bytes: [UInt8], ifMatching expected: String?) throws -> Bool {
        try pace(bytes.count)
        return try inner.write(path, bytes: bytes, ifMatching: expected)
    }
    /// The wrapped listing.
    public func list(_ directory: String, recursive: Bool) throws -> [String] { try inner.list(directory, recursive: recursive) }
    /// The wrapped bounded listing.
    public func list(_ directory: String, recursive: Bool, limit: Int) throws -> (paths: [String], truncated: Bool) {
        try inner.list(directory, recursive: recursive, limit: limit)
    }
    /// The wrapped delete.
    public func delete(_ path: String) throws { try inner.delete(path) }
    /// The wrapped remote's lease.
    public func publishLease() throws -> AnyObject? { try inner.publishLease() }
}

// MARK: Opening

/// Opening a remote from what a user typed.
public enum Remotes {
    /// How a remote is reached: the wrappers every backend gets.
    public struct Options: Sendable {
        /// Average transfer rate limit in bytes per second (0: none).
        public var maxBytesPerSecond: Double = 0
        /// How transient failures are retried.
        public var retry = RetryPolicy()
        /// Polled during waits and transfers; true stops the work with `SLMError.cancelled`.
        public var isCancelled: @Sendable () -> Bool = { false }
        /// Hears of each failed attempt that will be retried (attempt number, error).
        public var onRetry: @Sendable (Int, SLMError) -> Void = { _, _ in }
        /// For s3:// remotes: an S3-compatible endpoint, over AWS_ENDPOINT_URL and the profile.
        public var endpoint: String?
        /// Multipart part size for s3:// uploads (at least 5 MiB, S3's minimum).
        public var s3PartSize = 16 << 20
        /// The environment credentials and endpoints are read from.
        public var environment: [String: String] = ProcessInfo.processInfo.environment
        /// For http(s) remotes: where credentials come from (the environment above is used too).
        public var credentials = HTTPCredentials.Sources()
        /// For https remotes and S3 endpoints: a private CA and a client certificate.
        public var tls = TLSFiles()
        /// No rate limit, default retries, the process's environment.
        public init() {}
    }

    /// The TLS files a device or publisher names, each falling back to SLMSTORE_CA_BUNDLE,
    /// SLMSTORE_CLIENT_CERT and SLMSTORE_CLIENT_KEY.
    public struct TLSFiles: Sendable, Equatable {
        /// A CA bundle to trust instead of the system's.
        public var caBundle: String?
        /// A client certificate to present (mutual TLS).
        public var clientCertificate: String?
        /// The client certificate's key (in the certificate file when not given).
        public var clientKey: String?
        /// TLS files as given.
        public init(caBundle: String? = nil, clientCertificate: String? = nil, clientKey: String? = nil) {
            (self.caBundle, self.clientCertificate, self.clientKey) = (caBundle, clientCertificate, clientKey)
        }

        /// The files to use, checked readable now so a typo is one clear error, not a TLS failure.
        package func resolved(environment: [String: String]) throws -> TLSFiles {
            var out = TLSFiles()
            for (given, variable, setting, slot) in [(caBundle, "SLMSTORE_CA_BUNDLE", SLMError.Setting.caBundle, \TLSFiles.caBundle),
                                                     (clientCertificate, "SLMSTORE_CLIENT_CERT", .clientCertificate, \TLSFiles.clientCertificate),
                                                     (clientKey, "SLMSTORE_CLIENT_KEY", .clientKey, \TLSFiles.clientKey)] {
                let fromEnvironment = environment[variable].flatMap { $0.isEmpty ? nil : $0 }
                guard let path = given ?? fromEnvironment else { continue }
                guard access(path, R_OK) == 0 else {
                    let reason = String(cString: strerror(errno))
                    guard given == nil else {
                        throw SLMError.input(path: path, problem: "the \(setting.rawValue) cannot be read (\(reason))").remedied(by: .given(setting))
                    }
                    throw SLMError.input(path: path, problem: "the \(setting.rawValue) from \(variable) cannot be read (\(reason))")
                }
                out[keyPath: slot] = path
            }
            if out.clientKey != nil && out.clientCertificate == nil {
                throw SLMError.invalidSetting(.clientKey, problem: "is given but no client certificate (nor SLMSTORE_CLIENT_CERT) is")
            }
            return out
        }

        /// Sets these files on an HTTP client policy.
        package func apply(to policy: inout HTTPClient.Policy) {
            policy.caBundle = caBundle
            policy.clientCertificate = clientCertificate
            policy.clientKey = clientKey
        }
    }

    /// The backend for what the user typed: an http(s) URL, an s3:// bucket or a filesystem
    /// path, wrapped in retry and the rate limit. Any other `scheme://` is refused rather than
    /// taken for a directory name. A directory or bucket comes back as a `StoreBackend`; see
    /// `openWritable` where writing is the point.
    public static func open(_ location: String, options: Options = Options()) throws -> any ReadableBackend {
        // Generic over the concrete backend (the existential is opened here), so each wrapper is
        // a StoreBackend exactly when what it wraps is one.
        func wrapped<B: ReadableBackend>(_ base: B) -> any ReadableBackend {
            func retrying<R: ReadableBackend>(_ r: R) -> any ReadableBackend {
                Retrying(r, policy: options.retry, isCancelled: options.isCancelled, onRetry: options.onRetry)
            }
            guard options.maxBytesPerSecond > 0 else { return retrying(base) }
            return retrying(RateLimited(base, bytesPerSecond: options.maxBytesPerSecond, isCancelled: options.isCancelled))
        }
        return wrapped(try openUnwrapped(location, options: options))
    }

    /// `open` for a remote that will be written (push, `fleet --apply`, `resign`); a read-only
    /// one (an http(s) URL) is refused, `what` naming the operation in the message.
    public static func openWritable(_ location: String, options: Options = Options(), for what: String) throws -> any StoreBackend {
        guard let writable = try open(location, options: options) as? any StoreBackend else {
            throw SLMError.argument("\(what): \(HTTPCredentials.redact(location)) is read-only (a static web server); write to the directory or bucket it serves")
        }
        return writable
    }

    private static func openUnwrapped(_ location: String, options: Options) throws -> any ReadableBackend {
        let base: any ReadableBackend
        if location.hasPrefix("http://") || location.hasPrefix("https://") {
            guard let url = URL(string: location.hasSuffix("/") ? String(location.dropLast()) : location), url.host != nil else {
                throw SLMError.argument("invalid remote URL \"\(HTTPCredentials.redact(location))\"")
            }
            var sources = options.credentials
            sources.environment = options.environment
            var policy = HTTPClient.Policy()
            policy.isCancelled = options.isCancelled
            try options.tls.resolved(environment: options.environment).apply(to: &policy)
            base = HTTPBackend(base: url, credentials: try HTTPCredentials.resolve(for: url, sources: sources), policy: policy)
        } else if location.hasPrefix("s3://") {
            let (bucket, prefix) = try S3Backend.parse(location)
            var policy = HTTPClient.Policy()
            policy.isCancelled = options.isCancelled
            try options.tls.resolved(environment: options.environment).apply(to: &policy)
            base = S3Backend(bucket: bucket, prefix: prefix, config: try AWSConfig.resolve(endpoint: options.endpoint, environment: options.environment),
                             partSize: options.s3PartSize, policy: policy)
        } else if let fixed = misspelledURL(location) {
            // "http//host/store" or "https:/host/store" is a typo, not a directory to open.
            throw SLMError.argument("\"\(HTTPCredentials.redact(location))\" is not a valid remote URL; did you mean \(HTTPCredentials.redact(fixed))?")
        } else if let scheme = location.range(of: "://").map({ String(location[..<$0.lowerBound]) }) {
            throw SLMError.argument("unsupported remote \"\(location)\": \(scheme):// is not a kind of remote slmstore knows; use a directory path, s3://, http:// or https://")
        } else {
            base = LocalBackend(root: location)
        }
        return base
    }

    /// `misspelledURL` for callers outside the transport: what a mistyped URL was meant to be.
    public static func misspelledURLHint(_ location: String) -> String? { misspelledURL(location) }

    /// What `location` was meant to be when it is a known scheme with its "://" mistyped
    /// ("http//h", "https:/h", "s3:b"); nil for anything else.
    static func misspelledURL(_ location: String) -> String? {
        let lower = location.lowercased()
        for scheme in ["https", "http", "s3"] where lower.hasPrefix(scheme) && !lower.hasPrefix(scheme + "://") {
            var rest = location.dropFirst(scheme.count)
            guard rest.first == ":" || rest.hasPrefix("//") else { continue }
            rest = rest.drop { $0 == ":" }.drop { $0 == "/" }
            guard !rest.isEmpty else { continue }
            return scheme + "://" + rest
        }
        return nil
    }

    /// `open` with only a rate limit set.
    public static func open(_ location: String, maxBytesPerSecond: Double) throws -> any ReadableBackend {
        var o = Options()
        o.maxBytesPerSecond = maxBytesPerSecond
        return try open(location, options: o)
    }
}
