// A small synchronous HTTP client over URLSession (FoundationNetworking on Linux) that treats
// every response as hostile: bodies are bounded while they arrive, redirects are limited, and
// transient failures are retried with backoff.

import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]  // lowercased names
    public var body: [UInt8]
}

public final class HTTPClient: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    public struct Policy: Sendable {
        public var attempts = 5
        public var initialBackoff = 0.2
        public var maxBackoff = 5.0
        public var timeout: TimeInterval = 30
        public var maxRedirects = 5
        public init() {}
    }

    private final class TaskState {
        var data = Data()
        var limit: Int
        var response: HTTPURLResponse?
        var error: Error?
        var oversize = false
        var ignoredRange = false
        var expectsPartial = false
        var redirects = 0
        let done = DispatchSemaphore(value: 0)
        init(limit: Int) { self.limit = limit }
    }

    public let policy: Policy
    private var session: URLSession!
    private let lock = NSLock()
    private var states: [Int: TaskState] = [:]
    /// Throttle: bytes per second across all requests, 0 for unlimited.
    public var maxBytesPerSecond: Double = 0
    private var throttleStart = Date()
    private var throttleBytes: Double = 0

    public init(policy: Policy = Policy()) {
        self.policy = policy
        super.init()
        let config = URLSessionConfiguration.ephemeral
        config.timeoutIntervalForRequest = policy.timeout
        config.httpMaximumConnectionsPerHost = 8
        config.requestCachePolicy = .reloadIgnoringLocalCacheData
        config.urlCache = nil
        let queue = OperationQueue()
        // Delegate callbacks must arrive in order: body pieces are appended as they come.
        queue.maxConcurrentOperationCount = 1
        session = URLSession(configuration: config, delegate: self, delegateQueue: queue)
    }

    deinit { session.invalidateAndCancel() }

    public enum Failure: Error {
        case transient(String)
        case permanent(String)
    }

    /// One request, no retries. `limit` bounds the body; more is an error.
    public func performOnce(_ url: URL, headers: [String: String] = [:], limit: Int) throws -> HTTPResponse {
        var request = URLRequest(url: url)
        request.timeoutInterval = policy.timeout
        for (k, v) in headers { request.setValue(v, forHTTPHeaderField: k) }
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        let state = TaskState(limit: limit)
        state.expectsPartial = headers["Range"] != nil
        let task = session.dataTask(with: request)
        lock.lock()
        states[task.taskIdentifier] = state
        lock.unlock()
        task.resume()
        state.done.wait()
        lock.lock()
        states[task.taskIdentifier] = nil
        lock.unlock()
        if state.ignoredRange {
            throw Failure.permanent("server ignored the Range header (answered 200 with the whole file)")
        }
        if state.oversize {
            throw Failure.permanent("response body larger than the \(limit) bytes expected")
        }
        if state.redirects > policy.maxRedirects {
            throw Failure.permanent("too many redirects (more than \(policy.maxRedirects))")
        }
        if let error = state.error {
            let ns = error as NSError
            if ns.domain == NSURLErrorDomain && ns.code == NSURLErrorHTTPTooManyRedirects {
                throw Failure.permanent("redirect loop")
            }
            throw Failure.transient(ns.localizedDescription)
        }
        guard let response = state.response else { throw Failure.transient("no response") }
        var headers: [String: String] = [:]
        for (k, v) in response.allHeaderFields {
            if let k = k as? String, let v = v as? String { headers[k.lowercased()] = v }
        }
        return HTTPResponse(status: response.statusCode, headers: headers, body: [UInt8](state.data))
    }

    /// GET with retries on transient failures (network errors, timeouts, 5xx, 429).
    public func get(_ url: URL, headers: [String: String] = [:], limit: Int,
                    onRetry: ((Int, String) -> Void)? = nil) throws -> HTTPResponse {
        var delay = policy.initialBackoff
        var lastProblem = ""
        for attempt in 1...policy.attempts {
            do {
                let r = try performOnce(url, headers: headers, limit: limit)
                if r.status >= 500 || r.status == 429 || r.status == 408 {
                    lastProblem = "HTTP \(r.status)"
                } else {
                    return r
                }
            } catch let Failure.transient(message) {
                lastProblem = message
            }
            guard attempt < policy.attempts else { break }
            onRetry?(attempt, lastProblem)
            Thread.sleep(forTimeInterval: delay * Double.random(in: 0.5...1.5))
            delay = min(delay * 2, policy.maxBackoff)
        }
        throw Failure.transient("\(lastProblem) (after \(policy.attempts) attempts)")
    }

    private func throttle(_ bytes: Int) {
        guard maxBytesPerSecond > 0 else { return }
        lock.lock()
        throttleBytes += Double(bytes)
        let due = throttleBytes / maxBytesPerSecond - Date().timeIntervalSince(throttleStart)
        lock.unlock()
        if due > 0 { Thread.sleep(forTimeInterval: due) }
    }

    private func state(_ task: URLSessionTask) -> TaskState? {
        lock.lock()
        defer { lock.unlock() }
        return states[task.taskIdentifier]
    }

    // MARK: URLSessionDataDelegate

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
                           completionHandler: @escaping (URLSession.ResponseDisposition) -> Void) {
        if let s = state(dataTask) {
            s.response = response as? HTTPURLResponse
            if s.expectsPartial && s.response?.statusCode == 200 {
                s.ignoredRange = true
                completionHandler(.cancel)
                return
            }
            if let length = s.response?.expectedContentLength, length > Int64(s.limit) {
                s.oversize = true
                completionHandler(.cancel)
                return
            }
        }
        completionHandler(.allow)
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard let s = state(dataTask) else { return }
        if s.data.count + data.count > s.limit {
            s.oversize = true
            dataTask.cancel()
            return
        }
        s.data.append(data)
        // Sleeping here (on the serial delegate queue) stops reading the sockets, so TCP
        // back-pressure really limits the rate across all requests.
        throttle(data.count)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
                           newRequest request: URLRequest, completionHandler: @escaping (URLRequest?) -> Void) {
        if let s = state(task) {
            s.redirects += 1
            if s.redirects > policy.maxRedirects {
                completionHandler(nil)
                task.cancel()
                return
            }
        }
        completionHandler(request)
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        guard let s = state(task) else { return }
        if s.response == nil, let r = task.response as? HTTPURLResponse { s.response = r }
        s.error = s.oversize || s.ignoredRange || s.redirects > policy.maxRedirects ? nil : error
        s.done.signal()
    }
}
