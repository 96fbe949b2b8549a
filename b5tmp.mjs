import crypto, { createHash, createHmac } from 'node:crypto'
const body = '{"time":"2026-11-22T23:09:30.103Z","event":"statement","session":1,"client":"127.0.0.1:1234","user":"postgres","database":"postgres","application_name":"pgbench","identity":null,"context":null,"protocol":"extended","kind":"select","statement":"SELECT abalance FROM pgbench_accounts WHERE aid = $1","fingerprint":"abcdef0123456789","tables":["public.pgbench_accounts"],"protected_read":[],"protected_written":[],"tag":"SELECT","rows":1,"duration_ms":0.123,"outcome":{"status":"ok"},"chain":"c2be6c3077a900e40f13c826","seq":1}'
const prev = 'a'.repeat(64)
const N = 100000
const bench = (name, f) => { for (let r=0;r<3;r++){ const t = performance.now(); for (let i = 0; i < N; i++) f(i); if(r==2) console.log(name, ((performance.now() - t) * 1000 / N).toFixed(2), 'us') } }
let key = Buffer.alloc(32, 1)
bench('current', () => { const m = createHmac('sha256', key).update(prev).update('\n').update(body).digest('hex'); key = createHash('sha256').update('pgveil audit key v1').update(key).digest() })
console.log(typeof crypto.hash)
const ipad = Buffer.alloc(64), opad = Buffer.alloc(64)
const scratch = Buffer.alloc(64 + 32)
bench('oneshot', () => {
  for (let i = 0; i < 64; i++) { const k = i < 32 ? key[i] : 0; ipad[i] = k ^ 0x36; opad[i] = k ^ 0x5c }
  const inner = crypto.hash('sha256', Buffer.concat([ipad, Buffer.from(prev + '\n' + body)]), 'buffer')
  opad.copy(scratch, 0); inner.copy(scratch, 64)
  const m = crypto.hash('sha256', scratch, 'hex')
  key = crypto.hash('sha256', Buffer.concat([Buffer.from('pgveil audit key v1'), key]), 'buffer')
})
// check equality
key = Buffer.alloc(32, 3)
const a = createHmac('sha256', key).update(prev).update('\n').update(body).digest('hex')
for (let i = 0; i < 64; i++) { const k = i < 32 ? key[i] : 0; ipad[i] = k ^ 0x36; opad[i] = k ^ 0x5c }
const inner = crypto.hash('sha256', Buffer.concat([ipad, Buffer.from(prev + '\n' + body)]), 'buffer'); opad.copy(scratch, 0); inner.copy(scratch, 64)
console.log(a === crypto.hash('sha256', scratch, 'hex'))
