// The only module that imports the uWebSockets.js package. The official build is not on the npm
// registry; @trufflesuite/uws-js-unofficial (uWS.js v20.30 republished with Node 20 binaries,
// glibc >= 2.27) loads on these machines. To swap packages, change this one line.
import uWS = require('@trufflesuite/uws-js-unofficial');

export = uWS;
