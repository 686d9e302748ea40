// The same types through `require` (CommonJS resolution of the exports map).
import cluso = require('cluso-ws')
export const manager: cluso.WebSocketManager = new cluso.WebSocketManager()
