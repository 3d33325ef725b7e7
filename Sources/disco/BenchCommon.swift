import Foundation
import DiscoCore

func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}

func loadBLASOrExplain() throws -> BLAS {
    do { return try BLAS.load() } catch { throw CLIError("\(error)") }
}

/// A one-line error for the user: ArgumentParser prints "Error: <message>" and exits with code 1.
typealias CLIError = DiscoError

import ArgumentParser
