import Foundation
import DiscoCore

func jsonString(_ object: Any) -> String {
    let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
    return String(decoding: data, as: UTF8.self)
}

/// `applyingGEMMPrecision`: the commands that take --bf16 (`GEMMOptions`) also switch the
/// convolutions' GEMMs to DISCO_GEMM's precision (which --bf16 sets); the others stay float32.
func loadBLASOrExplain(applyingGEMMPrecision: Bool = false) throws -> BLAS {
    let blas: BLAS
    do { blas = try BLAS.load() } catch { throw CLIError("\(error)") }
    let wanted = applyingGEMMPrecision ? BLAS.precisionFromEnvironment() : .float32
    if wanted != BLAS.gemmPrecision {
        do { try blas.setGEMMPrecision(wanted) } catch { throw CLIError("\(error) (asked for by --bf16 or DISCO_GEMM=bf16)") }
    }
    return blas
}

/// A one-line error for the user: ArgumentParser prints "Error: <message>" and exits with code 1.
typealias CLIError = DiscoError

import ArgumentParser
