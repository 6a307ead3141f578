// The footprint map: the Natural Earth land outline (vendored, no tiles) and one rectangle
// per footprint. The data is a JSON block in the page; every text goes in as text
// (textContent), never as HTML: titles come from recipes written by strangers.
(function () {
  "use strict";
  // Rings that cross the antimeridian (Chukotka, Fiji) jump from 180 to -180 and would be
  // drawn as a stripe across the map: keep each ring's longitudes continuous instead.
  function unwrap(geometry) {
    var polys = geometry.type === "Polygon" ? [geometry.coordinates] : geometry.coordinates;
    polys.forEach(function (rings) {
      rings.forEach(function (ring) {
        for (var i = 1; i < ring.length; i++) {
          ring[i][0] += 360 * Math.round((ring[i - 1][0] - ring[i][0]) / 360);
        }
      });
    });
  }
  var el = document.getElementById("map");
  var block = document.getElementById("d4c-footprints");
  if (!el || !block || !window.L || !window.topojson || !window.D4C_LAND) { return; }
  var data = JSON.parse(block.textContent);
  var map = L.map(el, { attributionControl: false, zoomSnap: 0.25, worldCopyJump: false });
  var land = window.topojson.feature(window.D4C_LAND, window.D4C_LAND.objects.land);
  land.features.forEach(function (f) { unwrap(f.geometry); });
  L.geoJSON(land, { interactive: false,
    style: { color: "#9fb3c8", weight: 0.6, fillColor: "#f0f4f8", fillOpacity: 1 } }).addTo(map);
  var group = L.featureGroup();
  data.forEach(function (f) {
    var b = f.bbox;
    var box = L.rectangle([[b[1], b[0]], [b[3], b[2]]], {
      color: f.at_risk ? "#c53030" : "#2b6cb0", weight: 1.5, fillOpacity: 0.15 });
    var tip = document.createElement("span");
    tip.className = "d4c-tip";
    tip.textContent = f.label;
    box.bindTooltip(tip, { sticky: true });
    if (f.href) { box.on("click", function () { window.location.href = f.href; }); }
    group.addLayer(box);
  });
  group.addTo(map);
  var note = L.control({ position: "bottomright" });
  note.onAdd = function () {
    var div = L.DomUtil.create("div", "leaflet-control-attribution");
    div.textContent = "Land: Natural Earth (public domain)";
    return div;
  };
  note.addTo(map);
  if (group.getLayers().length) {
    map.fitBounds(group.getBounds(), { padding: [24, 24], maxZoom: 7 });
  } else {
    map.setView([60, -95], 3);
  }
})();
