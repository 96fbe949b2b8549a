/** Column policies for tests that build a Policy by hand. */
import type { ColumnPolicy } from '../../policy/policy.js'

/** Protected column `public.<table>.<name>` of plaintext type `type`, its ciphertexts bound to itself unless `extra` says otherwise. */
export function protectedColumn(table: string, name: string, type = 'text', extra: Partial<ColumnPolicy> = {}): ColumnPolicy {
  const qualified = `public.${table}.${name}`
  return { schema: 'public', table, column: name, qualified, type, binding: qualified, ...extra }
}
