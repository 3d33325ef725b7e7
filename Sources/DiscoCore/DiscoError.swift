/// A one-line error for the user, naming the file or option at fault and what to do. The CLI
/// prints it as "Error: <description>" and exits with code 1.
public struct DiscoError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
