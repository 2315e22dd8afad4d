// Where S3 credentials and settings come from, looked up where every AWS tool looks:
// environment variables, then the shared credentials and config files for AWS_PROFILE.
// The secret never leaves this value except into a request signature.

import SLMFormats
import SLMLocalStore
import Foundation

/// AWS credentials for signing S3 requests (never printed).
public struct AWSCredentials: Sendable {
    /// The access key id.
    public var accessKeyID: String
    /// The secret access key.
    public var secretAccessKey: String
    /// The session token of temporary credentials.
    public var sessionToken: String?
    /// Where they came from, for error messages ("AWS_ACCESS_KEY_ID", "profile ci in ~/.aws/credentials").
    public var source: String
}

/// How to reach S3: region, endpoint and credentials, resolved from options, the environment and
/// ~/.aws as the AWS CLI does.
public struct AWSConfig: Sendable {
    /// The region requests are signed for.
    public var region: String
    /// An S3-compatible endpoint (MinIO, Ceph, R2, moto); nil for AWS itself.
    public var endpoint: URL?
    /// nil: anonymous requests (a public bucket).
    public var credentials: AWSCredentials?

    /// A config from its parts (nil credentials: unsigned requests).
    public init(region: String, endpoint: URL?, credentials: AWSCredentials?) {
        self.region = region
        self.endpoint = endpoint
        self.credentials = credentials
    }

    /// Resolves settings the way the AWS CLI does. `endpoint` (from `--endpoint`) wins over
    /// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL and the profile's `endpoint_url`.
    public static func resolve(endpoint override: String? = nil, environment env: [String: String] = ProcessInfo.processInfo.environment) throws -> AWSConfig {
        let home = env["HOME"] ?? NSHomeDirectory()
        let profile = env["AWS_PROFILE"] ?? env["AWS_DEFAULT_PROFILE"] ?? "default"
        let credentialsFile = env["AWS_SHARED_CREDENTIALS_FILE"] ?? home + "/.aws/credentials"
        let configFile = env["AWS_CONFIG_FILE"] ?? home + "/.aws/config"
        let credentialSections = try INIFile.read(credentialsFile)
        let configSections = try INIFile.read(configFile)
        // In the config file every profile but the default is written "[profile NAME]".
        let fromConfig = configSections[profile == "default" ? "default" : "profile \(profile)"] ?? [:]
        let fromCredentials = credentialSections[profile] ?? [:]

        var credentials: AWSCredentials? = nil
        if let id = env["AWS_ACCESS_KEY_ID"], !id.isEmpty {
            guard let secret = env["AWS_SECRET_ACCESS_KEY"], !secret.isEmpty else {
                throw SLMError.argument("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not")
            }
            credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: env["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 },
                                         source: "AWS_ACCESS_KEY_ID")
        } else if let id = fromCredentials["aws_access_key_id"] ?? fromConfig["aws_access_key_id"] {
            guard let secret = fromCredentials["aws_secret_access_key"] ?? fromConfig["aws_secret_access_key"] else {
                throw SLMError.input(path: credentialsFile, problem: "profile \(profile) has aws_access_key_id but no aws_secret_access_key")
            }
            let file = fromCredentials["aws_access_key_id"] != nil ? credentialsFile : configFile
            credentials = AWSCredentials(accessKeyID: id, secretAccessKey: secret,
                                         sessionToken: fromCredentials["aws_session_token"] ?? fromConfig["aws_session_token"],
                                         source: "profile \(profile) in \(file)")
        } else if env["AWS_PROFILE"] != nil {
            throw SLMError.input(path: credentialsFile, problem: "AWS_PROFILE names profile \(profile), which has no credentials there or in \(configFile)")
        }

        let region = [env["AWS_REGION"], env["AWS_DEFAULT_REGION"], fromConfig["region"]].compactMap { $0 }.first { !$0.isEmpty } ?? "us-east-1"
        guard region.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "-" }) else {
            throw SLMError.argument("AWS region \"\(region)\" is not a region name")
        }
        var endpoint: URL? = nil
        if let text = [override, env["AWS_ENDPOINT_URL_S3"], env["AWS_ENDPOINT_URL"], fromConfig["endpoint_url"]].compactMap({ $0 }).first(where: { !$0.isEmpty }) {
            let trimmed = text.hasSuffix("/") ? String(text.dropLast()) : text
            guard let url = URL(string: trimmed), let scheme = url.scheme, scheme == "http" || scheme == "https", url.host != nil else {
                throw SLMError.argument("S3 endpoint \"\(text)\" is not an http(s) URL")
            }
            endpoint = url
        }
        return AWSConfig(region: region, endpoint: endpoint, credentials: credentials)
    }
}

/// The INI dialect of ~/.aws/credentials and ~/.aws/config: [section], key = value, # and ;
/// comments. A missing file is an empty one.
enum INIFile {
    static func read(_ path: String) throws -> [String: [String: String]] {
        guard FileSystem.exists(path) else { return [:] }
        let text = String(decoding: try FileSystem.readFile(path, limit: 1 << 20), as: UTF8.self)
        var sections: [String: [String: String]] = [:]
        var current: String? = nil
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                current = String(line.dropFirst().dropLast()).trimmingCharacters(in: .whitespaces)
                continue
            }
            guard let section = current, let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
            sections[section, default: [:]][key] = value
        }
        return sections
    }
}
