import Foundation
import DiscoCore

func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}

func loadBLASOrExplain() throws -> BLAS {
    let blas: BLAS
    do { blas = try BLAS.load() } catch { throw CLIError("\(error)") }
    // DISCO_GEMM (or --bf16, which sets it): the convolutions' GEMM precision.
    let wanted = BLAS.precisionFromEnvironment()
    if wanted != BLAS.gemmPrecision {
        do { try blas.setGEMMPrecision(wanted) } catch { throw CLIError("\(error)") }
    }
    return blas
}

/// A one-line error for the user: ArgumentParser prints "Error: <message>" and exits with code 1.
typealias CLIError = DiscoError

import ArgumentParser
