/**
 * A quick answer to "does this decoded payload hold a key its schema does not declare?", read
 * from the schema's AST once and then walking the value without allocating. It answers `true`
 * (clean: no undeclared key anywhere) only where it is sure; for anything it does not follow (a
 * union of structs, index signatures, recursive schemas, class instances) it answers `false`,
 * and the full check (AuthMiddleware.excessFields: a validation with onExcessProperty "error")
 * decides and names the fields.
 *
 * Why: that validation builds a second copy of every payload, and was about a tenth of what a
 * master allocated per heartbeat (a sampling heap profile of bench/heartbeats.ts at 100 nodes),
 * though nearly every payload is clean.
 */
import { SchemaAST } from "effect"

type Clean = (u: unknown) => boolean

const always: Clean = () => true
const never: Clean = () => false

const isObject = (u: unknown): u is Record<PropertyKey, unknown> => typeof u === "object" && u !== null

/** A type whose values have no keys to check: primitives, literals, enums, template literals. */
const isLeaf = (ast: SchemaAST.AST): boolean => {
  switch (ast._tag) {
    case "Literal":
    case "UniqueSymbol":
    case "UndefinedKeyword":
    case "VoidKeyword":
    case "NeverKeyword":
    case "UnknownKeyword":
    case "AnyKeyword":
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "BigIntKeyword":
    case "SymbolKeyword":
    case "Enums":
    case "TemplateLiteral":
      return true
    case "Refinement":
      return isLeaf(ast.from)
    default:
      return false
  }
}

const compile = (ast: SchemaAST.AST): Clean => {
  if (isLeaf(ast)) return always
  switch (ast._tag) {
    case "Refinement":
      return compile(ast.from)
    case "Transformation":
      return compile(ast.to)
    case "TypeLiteral": {
      if (ast.indexSignatures.length > 0) return never
      const fields = new Map<PropertyKey, Clean>(ast.propertySignatures.map((ps) => [ps.name, compile(ps.type)]))
      return (u) => {
        if (!isObject(u) || Array.isArray(u)) return false
        for (const key of Reflect.ownKeys(u)) {
          const field = fields.get(key)
          if (field === undefined || !field(u[key])) return false
        }
        return true
      }
    }
    case "TupleType": {
      if (ast.rest.length > 1) return never
      const elements = ast.elements.map((e) => compile(e.type))
      const rest = ast.rest.length === 1 ? compile(ast.rest[0]!.type) : undefined
      return (u) => {
        if (!Array.isArray(u)) return false
        for (let i = 0; i < u.length; i++) {
          const element = i < elements.length ? elements[i]! : rest
          if (element === undefined || !element(u[i])) return false
        }
        return true
      }
    }
    case "Union": {
      // Followed only when at most one member has keys (an optional struct: the struct or
      // undefined); a union of several structs would need to know which one the value is.
      const keyed = ast.types.filter((t) => !isLeaf(t))
      if (keyed.length === 0) return always
      if (keyed.length > 1) return never
      const member = compile(keyed[0]!)
      return (u) => (isObject(u) ? member(u) : true)
    }
    default:
      return never
  }
}

/** The quick check for values of `ast` (a Type side, SchemaAST.typeAST). */
export const cleanCheck = (ast: SchemaAST.AST): Clean => compile(ast)
