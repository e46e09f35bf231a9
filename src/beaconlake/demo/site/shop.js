/* The shop's own behaviour, and the events a real shop would track with beaconlake.js:
   product_view, add_to_cart and purchase carry the same props as the simulator's. */
(function () {
  // q.push works before the tracker has loaded (queued) and after (called at once)
  var bl = function () { window.beaconlake.q.push([].slice.call(arguments)); };
  var cart = JSON.parse(localStorage.getItem("shop.cart") || "[]");
  var save = function () { localStorage.setItem("shop.cart", JSON.stringify(cart)); };
  var d = document.body.dataset;
  if (d.sku) {
    bl("track", "product_view", {category: d.category, sku: d.sku, price: +d.price});
    document.getElementById("add-to-cart").onclick = function () {
      cart.push({sku: d.sku, price: +d.price, category: d.category}); save();
      bl("track", "add_to_cart", {sku: d.sku, price: +d.price, category: d.category});
      this.textContent = "Added ✓";
    };
  }
  var list = document.getElementById("cart");
  if (list) list.innerHTML = cart.map(function (c) { return "<li>" + c.sku + " €" + c.price.toFixed(2) + "</li>"; }).join("") || "<li>empty</li>";
  var checkout = document.getElementById("checkout");
  if (checkout) checkout.onsubmit = function (e) {
    e.preventDefault();
    var value = cart.reduce(function (s, c) { return s + c.price; }, 0);
    bl("track", "purchase", {value: Math.round(value * 100) / 100, currency: "EUR", items: cart.length});
    cart = []; save();
    document.getElementById("thanks").hidden = false;
    bl("flush");
  };
  var signin = document.getElementById("signin");
  if (signin) signin.onsubmit = function (e) { e.preventDefault(); bl("identify", signin.user.value); location.href = "/"; };
})();
