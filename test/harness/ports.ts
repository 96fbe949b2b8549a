export { freePort } from '../../bench/postgres-server.js'
