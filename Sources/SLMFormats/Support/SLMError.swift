// The errors the library reports: one typed case per situation a caller handles differently,
// each carrying what a user needs to act on it. `description` is the one-line message; the
// command layer alone maps cases to exit codes.

/// An error of the library: the case says what kind of trouble, the values what a user needs to
/// act.
public enum SLMError: Error, CustomStringConvertible, Equatable {
    /// A file or directory named by the user cannot be used.
    case input(path: String, problem: String)
    /// A command-line argument, reference, name or version is malformed.
    case argument(String)
    /// Something asked for does not exist in the store.
    case notFound(String)
    /// The request conflicts with what the store already holds.
    case conflict(String)
    /// A directory (or remote) that should be a store is not one.
    case notAStore(path: String, problem: String)
    /// A store, manifest or object written by a newer release: nothing here can read it, so
    /// retrying is pointless until slmstore is upgraded.
    case unsupportedFormat(path: String, what: String, found: UInt64, supported: UInt64)
    /// Bytes in the store (or from a remote) are not what they claim to be.
    case damaged(path: String, problem: String)
    /// A file reassembled from chunks that each passed their XXH3 check does not have the
    /// SHA-256 its tree names: one of `chunks` collides with another chunk's id.
    case fileMismatch(path: String, problem: String, chunks: [ChunkID])
    /// An operating-system call failed; `errno` is the cause.
    case io(path: String, operation: String, errno: Int32)
    /// A remote answered with a status the operation cannot use.
    case remoteStatus(url: String, status: Int, problem: String)
    /// A remote could not be reached or the transfer broke off. `transient` failures are retried.
    case transport(url: String, problem: String, transient: Bool)
    /// A remote answered, but with something unusable (bad data, a missing file it listed).
    case remote(url: String, problem: String)
    /// Release metadata a device was told to check is missing, unsigned, replayed or expired.
    case untrusted(source: String, problem: String)
    /// The operation was asked to stop (a signal, a caller's cancel); what was committed stays.
    case cancelled
    /// Anything else that stops the operation, worded for the user.
    case failed(String)
    /// A setting a caller gave is out of range or does not fit another: `problem` follows the
    /// setting's name. The library names settings in its own words (`Setting`); a command
    /// layer names its option for each instead, so no library message names a command-line flag.
    case invalidSetting(Setting, problem: String)

    /// Settings a caller gives the library, in the words the library's messages use for them.
    public enum Setting: String, Sendable, CaseIterable {
        case rolloutPercent = "rollout percent"
        case minReportingDevices = "minimum number of reporting devices"
        case haltOnFailure = "halt-on-failure threshold"
        case advanceSchedule = "advance interval and step"
        case downloadWindow = "download window"
        case reportURL = "report URL"
        case deviceID = "device id"
        case clientKey = "client key"
        case signingKeys = "signing"
        case healthCheck = "a health check"
    }

    /// The one-line message a user sees.
    public var description: String {
        switch self {
        case let .input(path, problem): return "\(path): \(problem)"
        case let .argument(message): return message
        case let .notFound(message): return message
        case let .conflict(message): return message
        case let .notAStore(path, problem): return "\(path): \(problem)"
        case let .unsupportedFormat(path, what, found, supported):
            return "\(path): \(what) format \(found) is newer than this build of slmstore understands (\(supported)); upgrade slmstore"
        case let .damaged(path, problem): return "\(path): corrupt: \(problem)"
        case let .fileMismatch(path, problem, _): return "\(path): corrupt: \(problem)"
        case let .io(path, operation, code):
            return "\(path): \(operation) failed: \(String(cString: strerror(code)))"
        case let .remoteStatus(url, status, problem): return "\(url): HTTP \(status)\(problem.isEmpty ? "" : ": " + problem)"
        case let .transport(url, problem, _): return "\(url): \(problem)"
        case let .remote(url, problem): return "\(url): \(problem)"
        case let .untrusted(source, problem): return "\(source): untrusted: \(problem)"
        case .cancelled: return "interrupted"
        case let .failed(message): return message
        case let .invalidSetting(setting, problem): return "\(setting.rawValue) \(problem)"
        }
    }

    /// A stable name for the kind of error, one per case, for scripts and logs (the message may
    /// change between releases; the code does not).
    public var code: String {
        switch self {
        case .input: return "invalid-input"
        case .argument: return "invalid-argument"
        case .notFound: return "not-found"
        case .conflict: return "conflict"
        case .notAStore: return "not-a-store"
        case .unsupportedFormat: return "unsupported-format"
        case .damaged: return "damaged"
        case .fileMismatch: return "file-mismatch"
        case .io: return "io"
        case .remoteStatus: return "remote-status"
        case .transport: return "transport"
        case .remote: return "remote"
        case .untrusted: return "untrusted"
        case .cancelled: return "cancelled"
        case .failed: return "failed"
        case .invalidSetting: return "invalid-setting"
        }
    }

    /// Worth trying again after a pause: the network or the server may recover.
    public var isTransient: Bool {
        switch self {
        case let .transport(_, _, transient): return transient
        case let .remoteStatus(_, status, _): return status >= 500 || status == 429 || status == 408
        default: return false
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
